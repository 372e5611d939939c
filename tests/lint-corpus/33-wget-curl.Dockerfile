FROM debian:12
RUN apt-get update && apt-get install -y --no-install-recommends curl=7.88.1-10+deb12u8 wget=1.21.3-1+b2 && rm -rf /var/lib/apt/lists/*
RUN curl -fsSLo /usr/local/bin/yq https://github.com/mikefarah/yq/releases/download/v4.44.3/yq_linux_amd64
RUN wget -q -O /tmp/helm.tgz https://get.helm.sh/helm-v3.16.2-linux-amd64.tar.gz && tar -xzf /tmp/helm.tgz -C /tmp
USER 1000
