"""The built-in mailbox viewer's logic: reading a stored message safely and showing it in Qt widgets.

The security decisions (HTML sanitising and remote-content blocking, file-name cleaning, escaping of control
and bidi characters, DSN and Authentication-Results summaries) are pure functions over bytes and strings in
`text`, `message`, `html`, `dsn`, `authresults` and `threads`, each unit-tested; the Qt pieces (`webview`,
`folders`, `reading`, `dialogs`) only display what those decide.
"""
