"""The built-in mailbox viewer's logic: reading a stored message safely and showing it in Qt widgets.

The security decisions (HTML sanitising and remote-content blocking, file-name cleaning, escaping of control
and bidi characters, DSN and Authentication-Results summaries, building outgoing mail) are pure functions
over bytes and strings in `text`, `message`, `html`, `dsn`, `authresults`, `threads` and `compose`, each
unit-tested; `actions`, `accounts` and `sendtest` are the engine calls the panel makes through the bridge;
the Qt pieces (`webview`, `reading`, `folders`, `dialogs`) only display what the pure functions decided.
"""
