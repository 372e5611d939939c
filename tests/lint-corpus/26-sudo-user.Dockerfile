FROM ubuntu:22.04
RUN apt-get update && apt-get install -y sudo && rm -rf /var/lib/apt/lists/*
RUN useradd -m dev && echo "dev ALL=(ALL) NOPASSWD:ALL" >> /etc/sudoers
USER dev
RUN sudo apt-get update && sudo apt-get install -y vim
WORKDIR /home/dev
