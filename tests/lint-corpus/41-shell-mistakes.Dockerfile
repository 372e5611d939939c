FROM debian:12
ARG MODE=release
RUN export VERSION=$(cat /VERSION) && echo $VERSION
RUN for f in $(ls /etc/*.conf); do cp $f /backup; done
RUN cd /app; make
RUN [ -f /x ] && echo yes || echo no
RUN ls -l /etc | grep conf > /tmp/confs
RUN eval `ssh-agent`
RUN rm -rf /tmp/$NAME/* && mv $SRC /opt
RUN if [ $MODE == "release" ]; then make release; fi
RUN useradd -u $UID app && chown -R app:app $HOME
USER app
