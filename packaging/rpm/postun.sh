# mcr .rpm %postun ($1: 0 = erase, 1 = upgrade): forget the unit.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
fi
