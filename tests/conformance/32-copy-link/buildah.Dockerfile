# 32-copy-link without --link, for buildah 1.28, which does not know the flag.
FROM scratch AS src
COPY dir /dir

FROM localhost/busybox:test
COPY dir /linked/
COPY --chown=app:staff --chmod=0600 f.txt /linked-owned.txt
COPY --from=src /dir/sub /from-stage/
COPY f.txt /linkdir/through-symlink.txt
COPY f.txt /new/parent/
