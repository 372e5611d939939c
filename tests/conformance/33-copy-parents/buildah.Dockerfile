# 33-copy-parents spelled out for buildah 1.28, which does not know --parents.
FROM localhost/busybox:test
COPY src/app/lib/a.txt /out/src/app/lib/
COPY src/app/lib /libs/src/app/lib/
COPY src/tool/lib /libs/src/tool/lib/
COPY src/other/o.md /mixed/src/other/
COPY top.txt /mixed/
