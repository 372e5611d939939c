# git cannot store hard links; symlinks are made here too so the case is in one place.
mkdir -p tree/dir
echo content > tree/file
echo d > tree/dir/in-dir
ln -s file tree/rel-link
ln -s /etc/passwd tree/abs-link
ln -s missing tree/dangling
ln -s dir tree/dir-link
ln tree/file tree/hard-link
ln tree/file tree/dir/hard-link-2
