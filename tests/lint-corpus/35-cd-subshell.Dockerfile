FROM gcc:14
COPY . /usr/src/myapp
WORKDIR /usr/src/myapp
RUN ./configure && make && (cd tests && make check)
RUN cd /tmp && curl -fsSLO https://example.com/lib-1.0.tar.gz && tar xzf lib-1.0.tar.gz
CMD ["./myapp"]
