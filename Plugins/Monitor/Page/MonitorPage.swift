/// The monitor page, compiled into the binary so that it works without network access: the HTML shell, its styles
/// and its script (no libraries, no CDN). The script polls `/monitor/api/overview` once a second and draws the rate
/// charts on canvases itself.
enum MonitorPage {
    static let html = MonitorPageHTML.text
    static let styles = MonitorPageStyles.text
    static let script = MonitorPageScript.text
}
