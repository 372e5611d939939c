# The case without size=, for buildah 1.28 (which rejects it).
FROM localhost/busybox:test
RUN --mount=type=tmpfs,target=/scratch echo gone > /scratch/x && cat /scratch/x > /tmpfs-saw
RUN --mount=type=tmpfs,target=/srv/data test ! -e /srv/data/keep && echo hidden > /hidden-check
RUN --mount=type=tmpfs,target=/deep/er/mount echo x > /deep/er/mount/y
