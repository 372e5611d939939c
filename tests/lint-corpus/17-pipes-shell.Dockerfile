FROM debian:12
RUN apt-get update && apt-get install -y --no-install-recommends wget=1.21.3-1+b2 ca-certificates=20230311 && rm -rf /var/lib/apt/lists/*
RUN wget -qO- https://example.com/releases/app-1.2.3.tar.gz | tar -xz -C /opt
RUN find /opt -name '*.sh' | xargs chmod +x
RUN ln -sf /bin/bash /bin/sh
RUN rm -rf $APP_HOME/cache
RUN mkdir -p $(dirname /opt/app/bin/tool)
USER 1000
