FROM alpine:3.19
RUN apk update && apk add bash curl jq
RUN apk add --no-cache openssl=3.1.4-r5 ca-certificates
COPY entrypoint.sh /usr/local/bin/
RUN chmod 777 /usr/local/bin/entrypoint.sh
ENTRYPOINT /usr/local/bin/entrypoint.sh
