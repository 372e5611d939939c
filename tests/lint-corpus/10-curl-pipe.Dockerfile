FROM ubuntu:24.04
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates && rm -rf /var/lib/apt/lists/*
RUN curl -fsSL https://deb.nodesource.com/setup_20.x | bash -
RUN curl -sSL https://get.docker.com/ | sh
RUN wget -qO- https://example.com/install.sh | sh
USER 1000
