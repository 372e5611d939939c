FROM alpine:3.20
RUN apk add --no-cache git openssh-client
COPY id_rsa /root/.ssh/id_rsa
COPY server.key /etc/ssl/private/server.key
COPY .env /app/.env
RUN git clone git@github.com:example/private.git /src && rm /root/.ssh/id_rsa
USER 1000
