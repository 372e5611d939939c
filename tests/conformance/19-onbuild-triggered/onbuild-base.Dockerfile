# Built first (as localhost/onbuild-base:test) by both tools; its triggers run in Dockerfile.
FROM localhost/busybox:test
ONBUILD COPY trigger.txt /triggered/
ONBUILD ENV TRIGGERED=yes
ONBUILD LABEL "triggered by"="onbuild base"
ONBUILD WORKDIR /trig
ENV IN_BASE=1
