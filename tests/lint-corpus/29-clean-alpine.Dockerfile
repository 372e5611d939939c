FROM alpine:3.20.3@sha256:1e42bbe2508154c9126d48c2b8a75420c3544343bf86fd041fb7527e017a4b4a
RUN apk add --no-cache ca-certificates=20240705-r0 tzdata=2024b-r0
COPY --chown=65532:65532 app /usr/local/bin/app
USER 65532
EXPOSE 8080
HEALTHCHECK --interval=30s CMD ["/usr/local/bin/app", "-health"]
ENTRYPOINT ["/usr/local/bin/app"]
