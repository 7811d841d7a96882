import Testing
@testable import ZbusMQ
