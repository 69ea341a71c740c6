# A stand-in for python:3.11-slim built from Debian packages only, for machines that can reach a
# package index but no container registry (`make images` builds it there: images/build.py imports
# a debootstrap'ed bookworm rootfs as ROOTFS). Like python:3.11-slim it puts `python` and `pip` on
# PATH in /usr/local/bin: a venv there, since Debian's own Python refuses `pip install` (PEP 668).
ARG ROOTFS=localhost/conveyor-rootfs:bookworm
FROM ${ROOTFS}
RUN python3.11 -m venv /usr/local && /usr/local/bin/python -m pip --version
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
CMD ["python3"]
