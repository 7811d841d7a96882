/// The configuration used when `--config` is not given; the same as `config/zbus.yaml`.
enum DefaultNodeFile {
    static let yaml = """
        node:
          name: zbus
          listen: 127.0.0.1:15555
          store: ./data
        modules:
          - module: mq
          - module: monitor
        """
}
