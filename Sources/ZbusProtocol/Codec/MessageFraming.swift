import NIOCore

/// The inbound half of a connection handler that frames messages itself: it accumulates what the socket delivers and
/// cuts whole messages out of it with a ``MessageParser``.
///
/// Doing this inside the connection's own handler, instead of a `ByteToMessageHandler` in front of it, spares every
/// message a trip through the channel pipeline boxed in an `NIOAny` (an allocation and a dynamic cast each).
///
/// Its methods are inlinable: the node's and the client's connection handlers, in other modules, call them for every
/// read and every message.
public struct InboundFramer {
    @usableFromInline var parser: MessageParser
    /// Bytes read and not yet consumed (a partial message), or `nil` when everything read has been cut.
    @usableFromInline var input: ByteBuffer?

    /// Compacting the held input once its consumed prefix is this large keeps a pipelining peer's buffer bounded.
    @usableFromInline static let compactionThreshold = 16 * 1024

    /// Creates a framer enforcing `limits`, stamping `stamp` (if any) on every message.
    public init(limits: MessageLimits, stamp: InboundStamp? = nil) {
        self.parser = MessageParser(limits: limits, stamp: stamp)
    }

    /// Adds bytes just read from the connection.
    @inlinable
    public mutating func append(_ bytes: ByteBuffer) {
        guard var held = input else {
            input = bytes
            return
        }
        // Taken out of the property first, so the buffer is uniquely referenced and the write does not copy it.
        input = nil
        if held.readerIndex >= Self.compactionThreshold { held.discardReadBytes() }
        var bytes = bytes
        held.writeBuffer(&bytes)
        input = held
    }

    /// The next complete message, or `nil` until more bytes arrive.
    ///
    /// - Throws: ``MessageDecodingError`` when the input breaks framing or a limit; the connection is unusable then.
    @inlinable
    public mutating func next() throws(MessageDecodingError) -> Message? {
        guard var buffer = input else { return nil }
        input = nil
        let message: Message?
        do {
            message = try parser.next(&buffer)
        } catch {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            throw error
        }
        // An emptied buffer is dropped, so that its storage is free again for the next read.
        if buffer.readableBytes > 0 { input = buffer }
        return message
    }

    /// Whether the peer waits for `100 Continue` before sending a body (see ``MessageParser/takeContinueRequest()``).
    @inlinable
    public mutating func takeContinueRequest() -> Bool { parser.takeContinueRequest() }

    /// Forgets whatever was read and not yet consumed (the connection is closing).
    @inlinable
    public mutating func discardInput() { input = nil }

    /// Bytes the held input buffer spans, its already consumed prefix included (0 when nothing is held).
    @inlinable
    public var heldFootprint: Int { input?.writerIndex ?? 0 }

    /// Whether part of a message's header block is held, its end not yet read (what a header timeout measures).
    @inlinable
    public var isReadingHeaderBlock: Bool { input != nil && !parser.isReadingBody }
}

/// The outbound half of a connection handler that frames messages itself: messages written between two flushes are
/// serialized into one buffer, handed to the channel as a single write at the flush.
///
/// The buffer is reused from flush to flush: once the socket has taken its bytes the channel lets go of it, and
/// clearing it then costs no allocation.
///
/// A class, not a struct: a flush can close the channel synchronously and the handler then discards the batch from
/// inside that flush, which a mutating method of a struct stored in the handler would turn into an exclusivity
/// violation. Confined to its channel's event loop.
public final class OutboundBatch {
    /// Bodies up to this size are copied next to their head; larger ones go out as their own buffer (no copy).
    public static let inlineBodyLimit = 16 * 1024
    /// A buffer that grew beyond this (one burst of many replies) is not kept for the next batch.
    private static let retainedCapacityLimit = 256 * 1024

    // Unchecked exclusivity: every access is a plain load, store or ByteBuffer call that ends before the batch calls
    // out to the channel (which may come back to `discard()`), so accesses never overlap; the runtime check of each
    // access to a class property cost more than the ByteBuffer work around it on the reply path.
    @exclusivity(unchecked) private var buffer: ByteBuffer
    @exclusivity(unchecked) private var holdsBytes = false
    /// Bytes handed to the channel so far: a connection's sign of activity, and its measure of output queued.
    @exclusivity(unchecked) public private(set) var writtenBytes: UInt64 = 0

    /// Creates an empty batch whose buffers come from `allocator`.
    public init(allocator: ByteBufferAllocator) {
        self.buffer = allocator.buffer(capacity: 1024)
    }

    /// Serializes `message` into the batch, or, for a large body, writes what the batch holds, then the head, then
    /// the body to `context` (so the order on the wire is kept).
    public func append(_ message: Message, context: ChannelHandlerContext) {
        let bodySize = message.body?.readableBytes ?? 0
        if bodySize > Self.inlineBodyLimit {
            writeOut(context: context)
            var head = context.channel.allocator.buffer(capacity: MessageSerializer.estimatedHeadSize(message))
            MessageSerializer.writeHead(message, into: &head)
            writtenBytes &+= UInt64(head.readableBytes + bodySize)
            context.write(NIOAny(head), promise: nil)
            context.write(NIOAny(message.body!), promise: nil)
            return
        }
        MessageSerializer.write(message, into: &buffer)
        holdsBytes = true
    }

    /// Appends `outgoing`: acknowledgements and deliveries are written without building a ``Message``.
    public func append(_ outgoing: Outgoing, context: ChannelHandlerContext) {
        switch outgoing {
        case .message(let message):
            append(message, context: context)
        case .acknowledgement(let id, let mq, let time):
            MessageSerializer.writeAcknowledgement(id: id, mq: mq, time: time, into: &buffer)
            holdsBytes = true
        case .record(let record, let requestId, let close, let encoder):
            encoder.write(record: record, requestId: requestId, close: close, into: &buffer)
            holdsBytes = true
        }
    }

    /// Appends raw bytes (an interim `100 Continue`) to the batch.
    public func append(raw bytes: StaticString) {
        buffer.writeStaticString(bytes)
        holdsBytes = true
    }

    /// Whether anything waits for ``flush(context:)``.
    public var isEmpty: Bool { !holdsBytes }

    /// Bytes handed to the channel so far plus those the batch holds for its next write.
    public var queuedBytes: UInt64 { writtenBytes &+ UInt64(buffer.readableBytes) }

    /// Bytes the batch holds for its next write.
    public var heldBytes: Int { buffer.readableBytes }

    /// Writes the batch to `context` and flushes the channel; `promise`, if any, completes once everything written
    /// so far has left (or failed).
    public func flush(context: ChannelHandlerContext, promise: EventLoopPromise<Void>? = nil) {
        // Write and flush travel down the pipeline together (`writeAndFlush`), once rather than twice.
        if holdsBytes {
            holdsBytes = false
            writtenBytes &+= UInt64(buffer.readableBytes)
            context.writeAndFlush(NIOAny(buffer), promise: promise)
            buffer.moveReaderIndex(to: buffer.writerIndex)
        } else if let promise {
            // An empty write completes after every write queued before it.
            context.writeAndFlush(NIOAny(context.channel.allocator.buffer(capacity: 0)), promise: promise)
        } else {
            context.flush()
        }
        if buffer.capacity > Self.retainedCapacityLimit {
            buffer = context.channel.allocator.buffer(capacity: 1024)
        } else {
            // Normally the socket took the bytes during the flush and this is the only reference left: no allocation.
            buffer.clear()
        }
    }

    /// Writes the batch, flushes, and closes the channel once everything queued has been written (closing at once
    /// would drop bytes the socket had not taken yet).
    public func flushAndClose(context: ChannelHandlerContext) {
        let channel = context.channel
        let written = context.eventLoop.makePromise(of: Void.self)
        flush(context: context, promise: written)
        written.futureResult.whenComplete { _ in channel.close(promise: nil) }
    }

    /// Forgets what was not written (the connection is gone).
    public func discard() {
        buffer.clear()
        holdsBytes = false
    }

    private func writeOut(context: ChannelHandlerContext) {
        guard holdsBytes else { return }
        holdsBytes = false
        writtenBytes &+= UInt64(buffer.readableBytes)
        context.write(NIOAny(buffer), promise: nil)
        buffer.moveReaderIndex(to: buffer.writerIndex)
    }
}
