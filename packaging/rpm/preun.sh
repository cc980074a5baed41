# mcr .rpm %preun ($1: 0 = erase, 1 = upgrade): stop the relay before it is erased.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now mcr.service >/dev/null 2>&1 || :
fi
