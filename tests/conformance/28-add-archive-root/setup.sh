mkdir -p t && echo in > t/inside.txt && chmod 0750 t
tar --owner=1234 --group=5678 --numeric-owner --sort=name --mtime=@0 -cf rooted.tar -C t .
rm -rf t
