#!/bin/sh
# Which Node.js the image gets (used by 00-run.sh; pi-gen itself runs only NN-* files).
# Usage: node-source.sh CANDIDATE MINIMUM
#   CANDIDATE  the distribution's nodejs version as `apt-cache policy nodejs` shows it
#              ("(none)" or empty when there is none)
#   MINIMUM    the lowest Node.js version the daemon runs on (package.json's engines)
# Prints "distribution" when the distribution's package is new enough and SNAPBACK_NODE_VERSION
# does not ask for a particular nodejs.org release; "download" otherwise.
candidate="$1"
minimum="$2"
if [ -z "${SNAPBACK_NODE_VERSION}" ] && [ -n "${candidate}" ] && [ "${candidate}" != "(none)" ] &&
	dpkg --compare-versions "${candidate}" ge "${minimum}"; then
	echo distribution
else
	echo download
fi
