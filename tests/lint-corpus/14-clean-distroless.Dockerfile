# syntax=docker/dockerfile:1
FROM golang:1.23.3@sha256:ad5c126b5cf501a8caef751a243bb717ec204ab1aa56dc41dc11be089fafcb4f AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/app ./cmd/app

FROM gcr.io/distroless/static-debian12:nonroot@sha256:d71f4b239be2d412017b798a0a401c44c3049a3ca454838473a4c32ed076bfea
COPY --from=build /out/app /app
USER 65532:65532
HEALTHCHECK CMD ["/app", "healthcheck"]
ENTRYPOINT ["/app"]
