FROM fedora:40
RUN dnf install -y gcc make git
RUN dnf -y install python3-devel-3.12.4 && dnf clean all
USER 1001
CMD ["bash"]
