# The worker command (cmd/worker, with its demo tasks) and the example
# producer (examples/producer), as static binaries in a distroless image.
#
#   docker build -t gotasks .
#   docker run --rm gotasks --help
#   docker run --rm --entrypoint /usr/local/bin/producer gotasks -help
#
# A real deployment builds its own worker (a main that imports its task
# packages and calls cli.Main) the same way: only the package path of
# the first go build changes.
#
# examples/deploy/deploy_test.go checks this file against the repository
# and docker-compose.yml: keep one go build per RUN line, with -o.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so that this layer stays cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries: the runtime image has no C library.
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags="-s -w" -o /out/worker ./cmd/worker
RUN go build -trimpath -ldflags="-s -w" -o /out/producer ./examples/producer

# CA certificates and time zones included; no shell; runs as uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/worker /out/producer /usr/local/bin/
USER nonroot:nonroot
# --health-addr :8080 (off unless the flag is given).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/worker"]
