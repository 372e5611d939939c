FROM debian:12
COPY app /usr/local/bin/app
ENTRYPOINT ["/usr/local/bin/app"]
CMD ["serve"]
CMD ["--port", "8080"]
ENTRYPOINT ["/usr/local/bin/app", "--verbose"]
HEALTHCHECK CMD ["/usr/local/bin/app", "ping"]
HEALTHCHECK --interval=30s CMD ["/usr/local/bin/app", "health"]
USER 1000
