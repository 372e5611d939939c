# The same steps without heredocs, for buildah 1.28 (which has none).
FROM localhost/busybox:test
ENV WHO=world
RUN mkdir /h && echo "hello $WHO" > /h/one
RUN echo "shebang /dev/pipes/EOT" > /h/two
RUN echo 'raw $WHO' > /h/three
RUN echo tabs > /h/four
