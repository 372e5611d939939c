# -f build/app.Dockerfile: build/app.Dockerfile.dockerignore, beside the Dockerfile, is
# used instead of the context's .dockerignore.
FROM scratch
COPY . /ctx/
