FROM golang:1.23 AS builder
WORKDIR /src
COPY . .
RUN go build -o /out/app .

FROM alpine:3.20
COPY --from=busybox:1.36 /bin/busybox /bin/busybox
COPY --from=buildr /out/app /usr/local/bin/app
COPY --from=builder /out/app /usr/local/bin/app2
USER 65532
ENTRYPOINT ["/usr/local/bin/app"]
