# mcr .rpm %post ($1: 1 = install, 2 = upgrade): create the mcr user/group and /run/mcr,
# tell systemd about the unit. mcr is not enabled or started by the package.
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers /usr/lib/sysusers.d/mcr.conf || :
elif ! getent passwd mcr >/dev/null; then
    getent group mcr >/dev/null || groupadd --system mcr || :
    useradd --system --gid mcr --no-create-home --home-dir /nonexistent \
        --shell /sbin/nologin --comment "mcr multicast relay" mcr || :
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles --create /usr/lib/tmpfiles.d/mcr.conf || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    if [ "$1" -ge 2 ]; then
        systemctl try-restart mcr.service || :
    fi
fi
