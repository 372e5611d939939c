FROM jenkins/inbound-agent:latest-jdk17
USER root
RUN apt-get update && apt-get install -y docker.io && rm -rf /var/lib/apt/lists/*
RUN usermod -aG docker jenkins
EXPOSE 2375
USER root
