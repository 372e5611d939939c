# 34-copy-exclude spelled out for buildah 1.28, which does not know --exclude.
FROM localhost/busybox:test
COPY dir/a.txt /out/
COPY dir/sub/c.txt /out/sub/
COPY hom2.md /mydir/
COPY dir/a.txt dir/b.log /partial/
COPY dir/cache /partial/cache/
COPY dir/sub/c.txt /partial/sub/
