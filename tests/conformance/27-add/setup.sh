# Archives are made here so their owners and modes are known. They have no "./" entry
# (28-add-archive-root covers that).
mkdir -p t/dir/sub
echo one > t/dir/one.txt
echo two > t/dir/sub/two.txt
echo exe > t/run.sh && chmod 0750 t/run.sh
ln -s dir/one.txt t/link
chmod 0700 t/dir/sub
tar --owner=1234 --group=5678 --numeric-owner --sort=name --mtime=@0 -czf archive.tar.gz -C t dir link run.sh
tar --owner=0 --group=0 --numeric-owner --sort=name --mtime=@0 -cf plain.tar -C t dir
echo "just text" | gzip -n > not-a-tar.gz
rm -rf t
