# labmail's lab image (docker-compose.yml, LAB.md): the `mta` and `mua` commands, the lab configs
# in /etc/labmail, mail data on the /var/lib/labmail volume, run as the non-root user "labmail".
#
#   docker build -t labmail .                       the image (the last stage, "labmail")
#   docker build --target dns -t labmail-dns .      the lab's DNS server (compose profile "dns")

# -- build: install the project and its runtime dependencies into a venv ------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mta ./mta
COPY pop3 ./pop3
COPY mua ./mua
RUN python -m venv /opt/labmail \
    && /opt/labmail/bin/pip install . \
    && /opt/labmail/bin/pip uninstall --yes pip

# -- dns: a tiny dnsmasq holding the lab domains' MX records (examples/dns/dnsmasq.conf) ----------
FROM alpine:3.20 AS dns
RUN apk add --no-cache dnsmasq
COPY examples/dns/dnsmasq.conf /etc/dnsmasq.conf
EXPOSE 53/udp 53/tcp
# dnsmasq binds port 53 as root, then drops to its own unprivileged user.
ENTRYPOINT ["dnsmasq", "--keep-in-foreground", "--conf-file=/etc/dnsmasq.conf"]

# -- labmail: the runtime image ----------------------------------------------------------------
FROM python:3.11-slim AS labmail
ENV PATH=/opt/labmail/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10025 labmail \
    && useradd --system --uid 10025 --gid labmail --no-create-home \
        --home-dir /var/lib/labmail --shell /usr/sbin/nologin labmail \
    && mkdir -p /var/lib/labmail \
    && chown labmail:labmail /var/lib/labmail
COPY --from=build /opt/labmail /opt/labmail
# The lab's server configs, user agent profiles and (lab-only) password files.
COPY examples/compose/ /etc/labmail/
# Databases, self-signed certificates and fetched mail. A named volume mounted here starts as a
# copy of this directory, so it belongs to labmail too.
VOLUME /var/lib/labmail
USER labmail
WORKDIR /var/lib/labmail
# The ports the lab's servers listen on inside the network (docker-compose.yml explains why the
# non-root user may bind them).
EXPOSE 25 587 110
CMD ["mta", "--help"]
