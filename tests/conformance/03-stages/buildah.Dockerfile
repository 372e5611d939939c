# 03-stages for buildah 1.28, which matches stage names case-sensitively (`--from=files`
# does not find `AS Files`); BuildKit lowercases stage names. Otherwise identical.
FROM scratch AS files
COPY a.txt /a.txt
COPY b.txt /nested/b.txt

FROM localhost/busybox:test AS middle
COPY --from=files /a.txt /from-name.txt
ENV MIDDLE=1

FROM middle
COPY --from=0 /nested /from-index/
COPY --from=localhost/busybox:test /etc/passwd /from-image/passwd
COPY --from=files /nested/b.txt /b.txt
CMD ["cat", "/b.txt"]
