FROM ubuntu:22.04
RUN apt-get update
RUN apt-get install -y curl git build-essential
RUN apt-get install python3 python3-pip
RUN cd /opt && git clone https://github.com/example/tool.git
WORKDIR /opt/tool
RUN make && make install
CMD ["tool"]
