# syntax=docker/dockerfile:1
FROM debian:12.8
RUN <<EOF
apt-get update
apt-get install -y --no-install-recommends jq
rm -rf /var/lib/apt/lists/*
EOF
COPY <<EOF /etc/app.conf
listen = 8080
EOF
USER 1000
CMD ["jq", "--version"]
