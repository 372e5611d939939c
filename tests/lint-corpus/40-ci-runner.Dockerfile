FROM ubuntu:24.04
ENV DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl git gnupg \
 && curl -fsSL https://download.docker.com/linux/ubuntu/gpg | gpg --dearmor -o /usr/share/keyrings/docker.gpg \
 && rm -rf /var/lib/apt/lists/*
ARG GITHUB_RUNNER_TOKEN
ARG RUNNER_VERSION=2.320.0
RUN mkdir /actions-runner && cd /actions-runner \
 && curl -fsSL -o runner.tgz https://github.com/actions/runner/releases/download/v${RUNNER_VERSION}/actions-runner-linux-x64-${RUNNER_VERSION}.tar.gz \
 && tar xzf runner.tgz && rm runner.tgz
RUN useradd -m runner && chown -R runner /actions-runner
USER runner
WORKDIR /actions-runner
ENTRYPOINT ["./run.sh"]
