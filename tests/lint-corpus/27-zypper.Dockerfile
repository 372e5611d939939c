FROM opensuse/leap:15.6
RUN zypper install -y curl
RUN zypper --non-interactive install git=2.43.0 && zypper clean
USER 1000
