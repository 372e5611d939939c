FROM debian:12-slim
ADD https://github.com/krallin/tini/releases/download/v0.19.0/tini /tini
ADD app.jar /opt/app/app.jar
ADD config/ /etc/app/
ADD vendor.tar.gz /opt/vendor/
RUN chmod +x /tini
USER 1000
ENTRYPOINT ["/tini", "--"]
CMD ["java", "-jar", "/opt/app/app.jar"]
