FROM debian:12
RUN apt update && apt install -y python3 && rm -rf /var/lib/apt/lists/*
RUN apt-get update && apt-get upgrade -y && rm -rf /var/lib/apt/lists/*
USER 1000
