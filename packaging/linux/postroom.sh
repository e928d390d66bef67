#!/bin/sh
# /usr/bin/postroom: starts the Postroom bundle installed in /opt/postroom.
#
# The system user `postroom` keeps its data in /var/lib/postroom (POSTROOM_HOME, also its home directory),
# however it was started: `runuser -u postroom -- postroom ...` and `sudo -u postroom` keep the caller's
# HOME, which that user can neither read nor write.
if [ "$(id -un 2>/dev/null)" = postroom ]; then
    HOME=/var/lib/postroom
    export HOME
    : "${POSTROOM_HOME:=/var/lib/postroom}"
    export POSTROOM_HOME
fi
exec /opt/postroom/postroom "$@"
