//! The rule catalogue: ids, default severities, and the bad/good examples
//! that both the unit tests and the `docs/lint/KL###.md` pages are made of,
//! so a rule's documentation can never drift from what it checks.

use crate::Severity;

/// What a rule protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// The same Dockerfile must give the same image tomorrow.
    Immutability,
    /// No credential may end up in a layer, the config or the history.
    Secrets,
    /// The image and its build need no more power than they use.
    LeastPrivilege,
    /// Smaller, clearer, more predictable images.
    Hygiene,
    /// Shell mistakes inside RUN.
    Shell,
}

impl Category {
    /// The heading used in docs and SARIF tags.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Immutability => "immutability",
            Category::Secrets => "secrets",
            Category::LeastPrivilege => "least-privilege",
            Category::Hygiene => "hygiene",
            Category::Shell => "shell",
        }
    }
}

/// One rule's metadata.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// `KL###`.
    pub id: &'static str,
    /// Short kebab-case name (SARIF `name`).
    pub name: &'static str,
    /// Severity unless `.kiln-lint.toml` changes it.
    pub severity: Severity,
    /// Where it belongs.
    pub category: Category,
    /// One line: what is wrong.
    pub summary: &'static str,
    /// Why it matters and how to fix it (a short paragraph for the docs page).
    pub why: &'static str,
    /// A Dockerfile that triggers the rule.
    pub bad: &'static str,
    /// The same Dockerfile, fixed.
    pub good: &'static str,
    /// hadolint rules this one covers (for users moving over, and the
    /// coverage test).
    pub hadolint: &'static [&'static str],
}

impl Rule {
    /// The documentation page, relative to the repository root.
    pub fn doc(&self) -> String {
        format!("docs/lint/{}.md", self.id)
    }

    /// The Markdown of the rule's documentation page. The pages under
    /// docs/lint/ are this text (a unit test keeps them in sync).
    pub fn doc_page(&self) -> String {
        let hadolint = if self.hadolint.is_empty() {
            "none (kiln only)".to_string()
        } else {
            self.hadolint.join(", ")
        };
        format!(
            "# {id}: {summary}\n\n\
             Severity: **{sev}** · category: {cat} · name: `{name}` · hadolint equivalent: {hadolint}\n\n\
             {why}\n\n\
             ## Bad\n\n```dockerfile\n{bad}```\n\n\
             ## Good\n\n```dockerfile\n{good}```\n\n\
             {note}\
             ## Silencing it\n\n\
             For one instruction, put `# kiln:ignore={id}` on the line before it. For a project, \
             add `disable = [\"{id}\"]` or `[rules] {id} = \"info\"` to `.kiln-lint.toml` \
             (see [kiln lint](../lint.md)).\n",
            id = self.id,
            summary = self.summary,
            sev = self.severity,
            cat = self.category.as_str(),
            name = self.name,
            why = self.why,
            bad = self.bad,
            good = self.good,
            note = if self.bad.contains("@sha256:") || self.good.contains("@sha256:") {
                "The digests in these examples are placeholders: pin the digest your registry (or `kiln build`) reports.\n\n"
            } else {
                ""
            },
        )
    }
}

/// Looks a rule up by id.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

use Category::*;
use Severity::*;

macro_rules! base {
    () => {
        "FROM debian:12.8@sha256:10901ccd8d249047f9761845b4594f121edbf0d9a2fb47ee3cf4f6caec6a2be8"
    };
}

macro_rules! df {
    ($($l:expr),* $(,)?) => { concat!($($l, "\n"),*) };
}

/// Every rule, in id order.
pub static RULES: &[Rule] = &[
    // ── Immutability ─────────────────────────────────────────────────────
    Rule {
        id: "KL001",
        name: "base-image-untagged",
        severity: Warning,
        category: Immutability,
        summary: "base image has no tag",
        why: "Without a tag the base is whatever `latest` points to on the day of the build, so two builds of the same Dockerfile differ. Name a version tag and pin its digest (or build with `kiln build --locked`).",
        bad: df!("FROM debian", "USER 65532"),
        good: df!(
            "FROM debian:12.8@sha256:10901ccd8d249047f9761845b4594f121edbf0d9a2fb47ee3cf4f6caec6a2be8",
            "USER 65532"
        ),
        hadolint: &["DL3006"],
    },
    Rule {
        id: "KL002",
        name: "base-image-latest",
        severity: Warning,
        category: Immutability,
        summary: "base image uses the `latest` tag",
        why: "`latest` moves with every release of the base image. Use a version tag and a digest.",
        bad: df!("FROM alpine:latest", "USER 65532"),
        good: df!(
            "FROM alpine:3.20@sha256:beefdbd8a1da6d2915566fde36db9db0b524eb737fc57cd1367effd16dc0d06d",
            "USER 65532"
        ),
        hadolint: &["DL3007"],
    },
    Rule {
        id: "KL003",
        name: "base-image-not-digest-pinned",
        severity: Warning,
        category: Immutability,
        summary: "base image is not pinned by digest",
        why: "A tag can be re-pointed by the publisher; only a digest names exact content. Append `@sha256:…` (kiln build prints the digest it resolved) or build with `--locked` against a Dockerfile.lock. ARG defaults used in `FROM ${BASE}` are expanded first; `scratch` and earlier stages need no pin.",
        bad: df!("FROM debian:12.8", "USER 65532"),
        good: df!(
            "FROM debian:12.8@sha256:10901ccd8d249047f9761845b4594f121edbf0d9a2fb47ee3cf4f6caec6a2be8",
            "USER 65532"
        ),
        hadolint: &[],
    },
    Rule {
        id: "KL004",
        name: "apt-update-alone",
        severity: Warning,
        category: Immutability,
        summary: "`apt-get update` without an install in the same RUN",
        why: "The package index is cached in its own layer, so a later `apt-get install` in another RUN may use a stale index (or fail once the mirror moved on). Update and install in one RUN.",
        bad: df!(
            base!(),
            "RUN apt-get update",
            "RUN apt-get install -y --no-install-recommends curl=7.88.1-10+deb12u8 && rm -rf /var/lib/apt/lists/*",
            "USER 65532"
        ),
        good: df!(
            base!(),
            "RUN apt-get update && apt-get install -y --no-install-recommends curl=7.88.1-10+deb12u8 && rm -rf /var/lib/apt/lists/*",
            "USER 65532"
        ),
        hadolint: &[],
    },
    Rule {
        id: "KL005",
        name: "apt-unpinned",
        severity: Warning,
        category: Immutability,
        summary: "`apt-get install` without version pins",
        why: "Unpinned packages install whatever the mirror has today. Pin each package (`pkg=version`), or use a kiln.toml with a kiln.lock for fully locked Debian images.",
        bad: df!(
            base!(),
            "RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*",
            "USER 65532"
        ),
        good: df!(
            base!(),
            "RUN apt-get update && apt-get install -y --no-install-recommends curl=7.88.1-10+deb12u8 && rm -rf /var/lib/apt/lists/*",
            "USER 65532"
        ),
        hadolint: &["DL3008"],
    },
    Rule {
        id: "KL006",
        name: "apk-unpinned",
        severity: Warning,
        category: Immutability,
        summary: "`apk add` without version pins",
        why: "Pin each package (`pkg=1.2.3-r0`, or `pkg~1.2` for a patch range) so a rebuild installs the same packages.",
        bad: df!(
            "FROM alpine:3.20@sha256:beefdbd8a1da6d2915566fde36db9db0b524eb737fc57cd1367effd16dc0d06d",
            "RUN apk add --no-cache curl",
            "USER 65532"
        ),
        good: df!(
            "FROM alpine:3.20@sha256:beefdbd8a1da6d2915566fde36db9db0b524eb737fc57cd1367effd16dc0d06d",
            "RUN apk add --no-cache curl=8.9.1-r2",
            "USER 65532"
        ),
        hadolint: &["DL3018"],
    },
    Rule {
        id: "KL007",
        name: "rpm-unpinned",
        severity: Warning,
        category: Immutability,
        summary: "`yum`/`dnf`/`microdnf`/`zypper` install without version pins",
        why: "Name the version (`pkg-1.2.3` for yum/dnf, `pkg=1.2.3` for zypper) so a rebuild installs the same packages.",
        bad: df!(
            "FROM fedora:41@sha256:3ec60eb34fa1a095c0c34dd37cead9fd38afb62612d43892fcf1d3425c32bc1e",
            "RUN dnf install -y httpd && dnf clean all",
            "USER 65532"
        ),
        good: df!(
            "FROM fedora:41@sha256:3ec60eb34fa1a095c0c34dd37cead9fd38afb62612d43892fcf1d3425c32bc1e",
            "RUN dnf install -y httpd-2.4.62 && dnf clean all",
            "USER 65532"
        ),
        hadolint: &["DL3033", "DL3041", "DL3037"],
    },
    Rule {
        id: "KL008",
        name: "pip-unpinned",
        severity: Warning,
        category: Immutability,
        summary: "`pip install` without version pins or a lock",
        why: "Pin each requirement with `==`, or install from a requirements file (`-r`), best with `--require-hashes`.",
        bad: df!(
            "FROM python:3.12-slim@sha256:2b0079146a74e23bf4ae8f6a28e1b484c6292f6fb904cbb51825b4a19812fcd8",
            "RUN pip install --no-cache-dir flask",
            "USER 65532"
        ),
        good: df!(
            "FROM python:3.12-slim@sha256:2b0079146a74e23bf4ae8f6a28e1b484c6292f6fb904cbb51825b4a19812fcd8",
            "COPY requirements.txt /tmp/",
            "RUN pip install --no-cache-dir --require-hashes -r /tmp/requirements.txt",
            "USER 65532"
        ),
        hadolint: &["DL3013"],
    },
    Rule {
        id: "KL009",
        name: "npm-unpinned",
        severity: Warning,
        category: Immutability,
        summary: "`npm install` of packages without versions",
        why: "Pin each package (`name@1.2.3`), or use `npm ci`, which installs exactly what package-lock.json says.",
        bad: df!(
            "FROM node:22-slim@sha256:4b44c32c9f3118d60977d0dde5f758f63c4f9eac8ddc4ecfd4c9b2a5e7e5e1ab",
            "WORKDIR /app",
            "RUN npm install -g typescript",
            "USER node"
        ),
        good: df!(
            "FROM node:22-slim@sha256:4b44c32c9f3118d60977d0dde5f758f63c4f9eac8ddc4ecfd4c9b2a5e7e5e1ab",
            "WORKDIR /app",
            "RUN npm install -g typescript@5.6.3",
            "USER node"
        ),
        hadolint: &["DL3016"],
    },
    Rule {
        id: "KL010",
        name: "gem-unpinned",
        severity: Warning,
        category: Immutability,
        summary: "`gem install` without a version",
        why: "Pin with `gem install name:1.2.3` or `-v 1.2.3`, or use `bundle install` with a Gemfile.lock.",
        bad: df!(
            "FROM ruby:3.3-slim@sha256:0f4c58c3ce0c1d0a3f8e1a2e5d1b8a1c3f1f0e7e3b4b8c0a8e4f0a2e6b4d2c1a",
            "RUN gem install bundler",
            "USER 65532"
        ),
        good: df!(
            "FROM ruby:3.3-slim@sha256:0f4c58c3ce0c1d0a3f8e1a2e5d1b8a1c3f1f0e7e3b4b8c0a8e4f0a2e6b4d2c1a",
            "RUN gem install bundler:2.5.22",
            "USER 65532"
        ),
        hadolint: &["DL3028"],
    },
    Rule {
        id: "KL011",
        name: "go-install-unpinned",
        severity: Warning,
        category: Immutability,
        summary: "`go install` without a fixed version",
        why: "`go install pkg` and `pkg@latest` resolve at build time. Name a version: `pkg@v1.2.3`.",
        bad: df!(
            "FROM golang:1.23@sha256:ad5c126b5cf501a8caef751a243bb717ec204ab1aa56dc41dc11be089fafcb4f",
            "RUN go install golang.org/x/tools/gopls@latest",
            "USER 65532"
        ),
        good: df!(
            "FROM golang:1.23@sha256:ad5c126b5cf501a8caef751a243bb717ec204ab1aa56dc41dc11be089fafcb4f",
            "RUN go install golang.org/x/tools/gopls@v0.16.2",
            "USER 65532"
        ),
        hadolint: &["DL3062"],
    },
    Rule {
        id: "KL012",
        name: "add-url-unverified",
        severity: Warning,
        category: Immutability,
        summary: "`ADD` of a URL without `--checksum`",
        why: "The download can change under the same URL. Add `--checksum=sha256:…` (or a commit for git URLs), or download in a RUN that checks a hash.",
        bad: df!(base!(), "ADD https://example.com/tool-1.0.tar.gz /opt/", "USER 65532"),
        good: df!(
            base!(),
            "ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/tool-1.0.tar.gz /opt/",
            "USER 65532"
        ),
        hadolint: &[],
    },
    Rule {
        id: "KL013",
        name: "curl-pipe-shell",
        severity: Error,
        category: Immutability,
        summary: "a download is piped into a shell",
        why: "`curl … | sh` runs whatever the server sends today, unverified. Download to a file, check its sha256, then run it.",
        bad: df!(
            base!(),
            "RUN curl -fsSL https://example.com/install.sh | sh",
            "USER 65532"
        ),
        good: df!(
            base!(),
            "ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/install.sh /tmp/install.sh",
            "RUN sh /tmp/install.sh",
            "USER 65532"
        ),
        hadolint: &[],
    },
    Rule {
        id: "KL014",
        name: "add-instead-of-copy",
        severity: Warning,
        category: Immutability,
        summary: "`ADD` of local files where `COPY` would do",
        why: "ADD also fetches URLs and unpacks archives, so its meaning depends on the source. Use COPY for plain files; keep ADD for local archives to extract.",
        bad: df!(base!(), "ADD app.conf /etc/app/", "USER 65532"),
        good: df!(base!(), "COPY app.conf /etc/app/", "USER 65532"),
        hadolint: &["DL3020"],
    },
    Rule {
        id: "KL015",
        name: "copy-from-unpinned-image",
        severity: Warning,
        category: Immutability,
        summary: "`COPY --from` names an image that is not pinned by digest (or a stage that does not exist)",
        why: "When `--from` is not an earlier stage, it is pulled as an image, so a typo in a stage name silently copies from `NAME:latest`, and a tag can change under the build. Name an earlier stage, or pin the image with `@sha256:…`.",
        bad: df!(
            base!(),
            "COPY --from=busybox:1.36 /bin/busybox /bin/busybox",
            "USER 65532"
        ),
        good: df!(
            base!(),
            "COPY --from=busybox:1.36@sha256:2919d0172f7524b2d8df9e50066a682669e6d170ac0f6a49676d54358fe970b5 /bin/busybox /bin/busybox",
            "USER 65532"
        ),
        hadolint: &["DL3022"],
    },
    // ── Secrets ──────────────────────────────────────────────────────────
    Rule {
        id: "KL101",
        name: "secret-in-env-or-arg",
        severity: Error,
        category: Secrets,
        summary: "an ENV or ARG name looks like a credential",
        why: "ENV values are stored in the image config, and build args in the history of every RUN that uses them. Pass credentials with `RUN --mount=type=secret,id=…` (`kiln build --secret id=…,src=…`).",
        bad: df!(
            base!(),
            "ARG NPM_TOKEN",
            "RUN echo \"//registry.npmjs.org/:_authToken=${NPM_TOKEN}\" > /root/.npmrc",
            "USER 65532"
        ),
        good: df!(
            base!(),
            "RUN --mount=type=secret,id=npmrc,target=/root/.npmrc true",
            "USER 65532"
        ),
        hadolint: &["DL3064"],
    },
    Rule {
        id: "KL102",
        name: "secret-value",
        severity: Error,
        category: Secrets,
        summary: "a literal credential (token, key, password) is written in the Dockerfile",
        why: "Anything written in a Dockerfile ends up in the image config or history and in version control. Revoke the credential and pass a new one with `RUN --mount=type=secret`.",
        bad: df!(
            base!(),
            "ENV GITHUB_AUTH=ghp_0123456789abcdefghijABCDEFGHIJ012345",
            "USER 65532"
        ),
        good: df!(
            base!(),
            "RUN --mount=type=secret,id=github_auth,env=GITHUB_AUTH true",
            "USER 65532"
        ),
        hadolint: &["DL3064"],
    },
    Rule {
        id: "KL103",
        name: "secret-file-copied",
        severity: Error,
        category: Secrets,
        summary: "a credential file (.env, *.key, id_rsa, .npmrc…) is copied into the image",
        why: "The file's content stays in the layer, even if a later step deletes it. Mount it for the one RUN that needs it: `RUN --mount=type=secret,id=…,target=…`.",
        bad: df!(base!(), "COPY id_rsa /root/.ssh/id_rsa", "USER 65532"),
        good: df!(base!(), "RUN --mount=type=ssh true", "USER 65532"),
        hadolint: &[],
    },
    Rule {
        id: "KL104",
        name: "credentials-in-url",
        severity: Error,
        category: Secrets,
        summary: "a URL carries a user name and password",
        why: "`https://user:password@host` is stored in the history (and for ADD in the image metadata). Use a secret mount and a credentials file or header instead.",
        bad: df!(
            base!(),
            "RUN git clone https://deploy:s3cr3t@git.example.com/app.git /src",
            "USER 65532"
        ),
        good: df!(
            base!(),
            "RUN --mount=type=secret,id=netrc,target=/root/.netrc git clone https://git.example.com/app.git /src",
            "USER 65532"
        ),
        hadolint: &[],
    },
    Rule {
        id: "KL105",
        name: "secret-deleted-later",
        severity: Error,
        category: Secrets,
        summary: "a credential file copied in is deleted in a later step, but stays in the earlier layer",
        why: "Deleting a file only hides it: the layer that added it still holds it, and anyone who pulls the image can read it. Mount it with `RUN --mount=type=secret` for the step that needs it.",
        bad: df!(
            base!(),
            "COPY .npmrc /root/.npmrc",
            "RUN npm ci && rm /root/.npmrc",
            "USER 65532"
        ),
        good: df!(
            base!(),
            "RUN --mount=type=secret,id=npmrc,target=/root/.npmrc npm ci",
            "USER 65532"
        ),
        hadolint: &[],
    },
    // ── Least privilege ──────────────────────────────────────────────────
    Rule {
        id: "KL201",
        name: "runs-as-root",
        severity: Warning,
        category: LeastPrivilege,
        summary: "the image runs as root",
        why: "A process that escapes or is compromised has root in the container (and more with a weak runtime config). End the final stage with `USER` and a non-root user (a numeric uid such as 65532 works without /etc/passwd).",
        bad: df!(base!(), "USER root", "CMD [\"/bin/true\"]"),
        good: df!(base!(), "USER 65532", "CMD [\"/bin/true\"]"),
        hadolint: &["DL3002"],
    },
    Rule {
        id: "KL202",
        name: "sudo",
        severity: Warning,
        category: LeastPrivilege,
        summary: "`sudo` in RUN",
        why: "Build steps already run as the stage's USER; sudo adds a setuid binary and unpredictable environment handling. Switch with `USER root` for the steps that need it, then back.",
        bad: df!(base!(), "USER 1000", "RUN sudo mkdir /data"),
        good: df!(base!(), "RUN mkdir /data && chown 1000 /data", "USER 1000"),
        hadolint: &["DL3004"],
    },
    Rule {
        id: "KL203",
        name: "world-writable",
        severity: Warning,
        category: LeastPrivilege,
        summary: "files are made world-writable (chmod 777, o+w)",
        why: "Any user in the container can then change them, including binaries and configuration. Give write access to the owning user or group only (`chown app && chmod 750`).",
        bad: df!(base!(), "RUN mkdir /data && chmod 777 /data", "USER 65532"),
        good: df!(
            base!(),
            "RUN mkdir /data && chown 65532:65532 /data && chmod 750 /data",
            "USER 65532"
        ),
        hadolint: &[],
    },
    Rule {
        id: "KL204",
        name: "privileged-port",
        severity: Warning,
        category: LeastPrivilege,
        summary: "EXPOSE of a privileged port (below 1024)",
        why: "Binding a port below 1024 needs root or CAP_NET_BIND_SERVICE in many runtimes. Listen on a high port (8080, 8443) and map it when publishing.",
        bad: df!(base!(), "EXPOSE 80", "USER 65532"),
        good: df!(base!(), "EXPOSE 8080", "USER 65532"),
        hadolint: &[],
    },
    Rule {
        id: "KL205",
        name: "admin-port",
        severity: Warning,
        category: LeastPrivilege,
        summary: "EXPOSE of an administration port (SSH, telnet, RDP, VNC, Docker API)",
        why: "A container should not run an SSH or remote-desktop server; use `kiln`/`kubectl exec` for access. An exposed Docker API gives root on the host.",
        bad: df!(base!(), "EXPOSE 22", "USER 65532"),
        good: df!(base!(), "EXPOSE 8080", "USER 65532"),
        hadolint: &[],
    },
    Rule {
        id: "KL206",
        name: "invalid-port",
        severity: Error,
        category: LeastPrivilege,
        summary: "EXPOSE of a port outside 0–65535",
        why: "The port does not exist; the runtime refuses to publish it. Fix the number.",
        bad: df!(base!(), "EXPOSE 80800", "USER 65532"),
        good: df!(base!(), "EXPOSE 8080", "USER 65532"),
        hadolint: &["DL3011"],
    },
    // ── Hygiene ──────────────────────────────────────────────────────────
    Rule {
        id: "KL301",
        name: "cd-in-run",
        severity: Warning,
        category: Hygiene,
        summary: "`cd` in RUN instead of WORKDIR",
        why: "A `cd` lasts for one RUN only, which makes later steps easy to misread. Use `WORKDIR /path`.",
        bad: df!(base!(), "RUN cd /usr/src/app && make", "USER 65532"),
        good: df!(base!(), "WORKDIR /usr/src/app", "RUN make", "USER 65532"),
        hadolint: &["DL3003", "SC2164"],
    },
    Rule {
        id: "KL302",
        name: "shell-form-entrypoint",
        severity: Warning,
        category: Hygiene,
        summary: "shell-form ENTRYPOINT or CMD",
        why: "The shell form runs `/bin/sh -c`, so the process is not PID 1 and gets no signals (`docker stop` waits and kills it). Use the JSON form: `CMD [\"app\", \"--flag\"]`.",
        bad: df!(base!(), "USER 65532", "CMD /usr/local/bin/app --serve"),
        good: df!(base!(), "USER 65532", "CMD [\"/usr/local/bin/app\", \"--serve\"]"),
        hadolint: &["DL3025"],
    },
    Rule {
        id: "KL303",
        name: "apt-lists-kept",
        severity: Info,
        category: Hygiene,
        summary: "apt lists are not removed after `apt-get install`",
        why: "The package index stays in the layer (tens of MB). End the RUN with `rm -rf /var/lib/apt/lists/*`, or use `RUN --mount=type=cache,target=/var/lib/apt`.",
        bad: df!(
            base!(),
            "RUN apt-get update && apt-get install -y --no-install-recommends curl=7.88.1-10+deb12u8",
            "USER 65532"
        ),
        good: df!(
            base!(),
            "RUN apt-get update && apt-get install -y --no-install-recommends curl=7.88.1-10+deb12u8 && rm -rf /var/lib/apt/lists/*",
            "USER 65532"
        ),
        hadolint: &["DL3009"],
    },
    Rule {
        id: "KL304",
        name: "apt-recommends",
        severity: Info,
        category: Hygiene,
        summary: "`apt-get install` without `--no-install-recommends`",
        why: "Recommended packages are rarely needed in an image and add size and attack surface.",
        bad: df!(
            base!(),
            "RUN apt-get update && apt-get install -y curl=7.88.1-10+deb12u8 && rm -rf /var/lib/apt/lists/*",
            "USER 65532"
        ),
        good: df!(
            base!(),
            "RUN apt-get update && apt-get install -y --no-install-recommends curl=7.88.1-10+deb12u8 && rm -rf /var/lib/apt/lists/*",
            "USER 65532"
        ),
        hadolint: &["DL3015"],
    },
    Rule {
        id: "KL305",
        name: "apk-cache",
        severity: Info,
        category: Hygiene,
        summary: "`apk add` without `--no-cache`",
        why: "The APK index stays in the layer. Use `apk add --no-cache`.",
        bad: df!(
            "FROM alpine:3.20@sha256:beefdbd8a1da6d2915566fde36db9db0b524eb737fc57cd1367effd16dc0d06d",
            "RUN apk update && apk add curl=8.9.1-r2",
            "USER 65532"
        ),
        good: df!(
            "FROM alpine:3.20@sha256:beefdbd8a1da6d2915566fde36db9db0b524eb737fc57cd1367effd16dc0d06d",
            "RUN apk add --no-cache curl=8.9.1-r2",
            "USER 65532"
        ),
        hadolint: &["DL3019"],
    },
    Rule {
        id: "KL306",
        name: "missing-healthcheck",
        severity: Info,
        category: Hygiene,
        summary: "the final stage has no HEALTHCHECK",
        why: "Without one, Docker and Compose cannot tell a hung service from a healthy one. Add `HEALTHCHECK CMD [\"/app\", \"health\"]`, or `HEALTHCHECK NONE` to say there is none on purpose.",
        bad: df!(base!(), "USER 65532", "CMD [\"/app\"]"),
        good: df!(
            base!(),
            "USER 65532",
            "HEALTHCHECK CMD [\"/app\", \"--health\"]",
            "CMD [\"/app\"]"
        ),
        hadolint: &["DL3057"],
    },
    Rule {
        id: "KL307",
        name: "maintainer",
        severity: Warning,
        category: Hygiene,
        summary: "MAINTAINER is deprecated",
        why: "Use `LABEL org.opencontainers.image.authors=\"…\"`, which registries and scanners read.",
        bad: df!(base!(), "MAINTAINER Jane <jane@example.com>", "USER 65532"),
        good: df!(
            base!(),
            "LABEL org.opencontainers.image.authors=\"Jane <jane@example.com>\"",
            "USER 65532"
        ),
        hadolint: &["DL4000"],
    },
    Rule {
        id: "KL308",
        name: "multiple-cmd-entrypoint",
        severity: Warning,
        category: Hygiene,
        summary: "more than one CMD or ENTRYPOINT in a stage",
        why: "Only the last one takes effect, so the earlier ones mislead readers. Keep one.",
        bad: df!(
            base!(),
            "USER 65532",
            "CMD [\"/app\", \"serve\"]",
            "CMD [\"/app\", \"worker\"]"
        ),
        good: df!(base!(), "USER 65532", "CMD [\"/app\", \"worker\"]"),
        hadolint: &["DL4003", "DL4004"],
    },
    Rule {
        id: "KL309",
        name: "assume-yes-missing",
        severity: Warning,
        category: Hygiene,
        summary: "package install without `-y` (it waits for an answer)",
        why: "Without `-y` the package manager asks for confirmation, and a build has no terminal: it aborts. Add `-y` (`-n` for zypper).",
        bad: df!(
            base!(),
            "RUN apt-get update && apt-get install --no-install-recommends curl=7.88.1-10+deb12u8 && rm -rf /var/lib/apt/lists/*",
            "USER 65532"
        ),
        good: df!(
            base!(),
            "RUN apt-get update && apt-get install -y --no-install-recommends curl=7.88.1-10+deb12u8 && rm -rf /var/lib/apt/lists/*",
            "USER 65532"
        ),
        hadolint: &["DL3014", "DL3030", "DL3038", "DL3034"],
    },
    Rule {
        id: "KL310",
        name: "apt-not-apt-get",
        severity: Warning,
        category: Hygiene,
        summary: "`apt` in RUN instead of `apt-get`",
        why: "`apt` is for people at a terminal; its output and options are not stable for scripts. Use `apt-get` (or `apt-cache`).",
        bad: df!(
            base!(),
            "RUN apt update && apt install -y --no-install-recommends curl=7.88.1-10+deb12u8 && rm -rf /var/lib/apt/lists/*",
            "USER 65532"
        ),
        good: df!(
            base!(),
            "RUN apt-get update && apt-get install -y --no-install-recommends curl=7.88.1-10+deb12u8 && rm -rf /var/lib/apt/lists/*",
            "USER 65532"
        ),
        hadolint: &["DL3027"],
    },
    Rule {
        id: "KL311",
        name: "pip-cache",
        severity: Warning,
        category: Hygiene,
        summary: "`pip install` keeps its download cache in the layer",
        why: "Add `--no-cache-dir` (or set `ENV PIP_NO_CACHE_DIR=1`, or use `RUN --mount=type=cache,target=/root/.cache/pip`).",
        bad: df!(
            "FROM python:3.12-slim@sha256:2b0079146a74e23bf4ae8f6a28e1b484c6292f6fb904cbb51825b4a19812fcd8",
            "RUN pip install flask==3.0.3",
            "USER 65532"
        ),
        good: df!(
            "FROM python:3.12-slim@sha256:2b0079146a74e23bf4ae8f6a28e1b484c6292f6fb904cbb51825b4a19812fcd8",
            "RUN pip install --no-cache-dir flask==3.0.3",
            "USER 65532"
        ),
        hadolint: &["DL3042"],
    },
    Rule {
        id: "KL312",
        name: "rpm-cache",
        severity: Warning,
        category: Hygiene,
        summary: "`yum`/`dnf`/`zypper` install without cleaning the cache in the same RUN",
        why: "The metadata and package cache stay in the layer. End the RUN with `yum clean all` / `dnf clean all` / `zypper clean`.",
        bad: df!(
            "FROM fedora:41@sha256:3ec60eb34fa1a095c0c34dd37cead9fd38afb62612d43892fcf1d3425c32bc1e",
            "RUN dnf install -y httpd-2.4.62",
            "USER 65532"
        ),
        good: df!(
            "FROM fedora:41@sha256:3ec60eb34fa1a095c0c34dd37cead9fd38afb62612d43892fcf1d3425c32bc1e",
            "RUN dnf install -y httpd-2.4.62 && dnf clean all",
            "USER 65532"
        ),
        hadolint: &["DL3032", "DL3040", "DL3036"],
    },
    Rule {
        id: "KL313",
        name: "relative-workdir",
        severity: Warning,
        category: Hygiene,
        summary: "WORKDIR with a relative path",
        why: "A relative WORKDIR depends on the previous one (and on the base image). Use an absolute path.",
        bad: df!(base!(), "WORKDIR app", "USER 65532"),
        good: df!(base!(), "WORKDIR /app", "USER 65532"),
        hadolint: &["DL3000"],
    },
    Rule {
        id: "KL314",
        name: "copy-from-self",
        severity: Error,
        category: Hygiene,
        summary: "`COPY --from` names the stage it is in",
        why: "A stage cannot copy from itself. Name an earlier stage or an image.",
        bad: df!(
            "FROM debian:12.8@sha256:10901ccd8d249047f9761845b4594f121edbf0d9a2fb47ee3cf4f6caec6a2be8 AS build",
            "COPY --from=build /a /b",
            "USER 65532"
        ),
        good: df!(
            "FROM debian:12.8@sha256:10901ccd8d249047f9761845b4594f121edbf0d9a2fb47ee3cf4f6caec6a2be8 AS build",
            "RUN touch /a",
            base!(),
            "COPY --from=build /a /b",
            "USER 65532"
        ),
        hadolint: &["DL3023"],
    },
    Rule {
        id: "KL315",
        name: "env-self-reference",
        severity: Error,
        category: Hygiene,
        summary: "an ENV value uses a variable set in the same ENV instruction",
        why: "All values of one ENV are expanded before any is set, so `ENV A=1 B=$A` gives B the old A. Split it into two ENV instructions.",
        bad: df!(base!(), "ENV APP_HOME=/opt/app APP_BIN=$APP_HOME/bin", "USER 65532"),
        good: df!(
            base!(),
            "ENV APP_HOME=/opt/app",
            "ENV APP_BIN=$APP_HOME/bin",
            "USER 65532"
        ),
        hadolint: &["DL3044"],
    },
    Rule {
        id: "KL316",
        name: "copy-multiple-sources-dest",
        severity: Error,
        category: Hygiene,
        summary: "COPY/ADD of several sources to a destination that does not end in `/`",
        why: "With more than one source the destination must be a directory, written with a trailing `/`; the build fails otherwise.",
        bad: df!(base!(), "COPY a.conf b.conf /etc/app", "USER 65532"),
        good: df!(base!(), "COPY a.conf b.conf /etc/app/", "USER 65532"),
        hadolint: &["DL3021"],
    },
    Rule {
        id: "KL317",
        name: "from-platform",
        severity: Warning,
        category: Hygiene,
        summary: "`FROM --platform` with a fixed platform",
        why: "A fixed platform breaks multi-arch builds and emulates on other hosts. Leave it out, or use `$BUILDPLATFORM`/`$TARGETPLATFORM`.",
        bad: df!(
            "FROM --platform=linux/amd64 debian:12.8@sha256:10901ccd8d249047f9761845b4594f121edbf0d9a2fb47ee3cf4f6caec6a2be8",
            "USER 65532"
        ),
        good: df!(
            "FROM --platform=$BUILDPLATFORM debian:12.8@sha256:10901ccd8d249047f9761845b4594f121edbf0d9a2fb47ee3cf4f6caec6a2be8",
            "USER 65532"
        ),
        hadolint: &["DL3029"],
    },
    Rule {
        id: "KL318",
        name: "useradd-high-uid",
        severity: Warning,
        category: Hygiene,
        summary: "`useradd` with a large uid and without `-l`",
        why: "useradd records the uid in /var/log/lastlog and faillog as a sparse file, which becomes huge in a layer. Add `-l` (`--no-log-init`).",
        bad: df!(base!(), "RUN useradd -u 1000000 app", "USER app"),
        good: df!(base!(), "RUN useradd -l -u 1000000 app", "USER app"),
        hadolint: &["DL3046"],
    },
    Rule {
        id: "KL319",
        name: "curl-and-wget",
        severity: Info,
        category: Hygiene,
        summary: "both `curl` and `wget` are used",
        why: "Installing two download tools doubles size and attack surface. Pick one.",
        bad: df!(
            base!(),
            "RUN curl -fsSLo /a https://example.com/a",
            "RUN wget -qO /b https://example.com/b",
            "USER 65532"
        ),
        good: df!(
            base!(),
            "RUN curl -fsSLo /a https://example.com/a",
            "RUN curl -fsSLo /b https://example.com/b",
            "USER 65532"
        ),
        hadolint: &["DL4001"],
    },
    Rule {
        id: "KL320",
        name: "multiple-healthchecks",
        severity: Error,
        category: Hygiene,
        summary: "more than one HEALTHCHECK in a stage",
        why: "Only the last one applies. Keep one.",
        bad: df!(
            base!(),
            "USER 65532",
            "HEALTHCHECK CMD [\"/app\", \"ping\"]",
            "HEALTHCHECK CMD [\"/app\", \"health\"]"
        ),
        good: df!(base!(), "USER 65532", "HEALTHCHECK CMD [\"/app\", \"health\"]"),
        hadolint: &["DL3012"],
    },
    Rule {
        id: "KL321",
        name: "copy-relative-without-workdir",
        severity: Warning,
        category: Hygiene,
        summary: "COPY to a relative destination before any WORKDIR",
        why: "The destination then depends on the base image's working directory. Set `WORKDIR` first, or use an absolute path.",
        bad: df!(base!(), "COPY app.py app/", "USER 65532"),
        good: df!(base!(), "WORKDIR /srv", "COPY app.py app/", "USER 65532"),
        hadolint: &["DL3045"],
    },
    Rule {
        id: "KL322",
        name: "shell-symlink",
        severity: Warning,
        category: Hygiene,
        summary: "/bin/sh is replaced with a symlink instead of using SHELL",
        why: "Relinking /bin/sh changes the shell for every program in the image. Use `SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]` for the build.",
        bad: df!(base!(), "RUN ln -sf /bin/bash /bin/sh", "USER 65532"),
        good: df!(
            base!(),
            "SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]",
            "USER 65532"
        ),
        hadolint: &["DL4005"],
    },
    // ── Shell ────────────────────────────────────────────────────────────
    Rule {
        id: "KL401",
        name: "pipefail",
        severity: Warning,
        category: Shell,
        summary: "a RUN with a pipe does not set `-o pipefail`",
        why: "Without pipefail only the last command's status counts: `curl … | tar x` succeeds even when the download failed. Use `SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]` or start the RUN with `set -o pipefail &&`.",
        bad: df!(
            base!(),
            "RUN curl -fsSL https://example.com/a.tgz | tar -xz -C /opt",
            "USER 65532"
        ),
        good: df!(
            base!(),
            "SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]",
            "RUN curl -fsSL https://example.com/a.tgz | tar -xz -C /opt",
            "USER 65532"
        ),
        hadolint: &["DL4006"],
    },
    Rule {
        id: "KL402",
        name: "unquoted-variable",
        severity: Warning,
        category: Shell,
        summary: "an unquoted variable in a destructive command (rm, chmod, chown, mv, cp)",
        why: "An empty or spaced value changes the paths: `rm -rf $DIR/` with an empty DIR removes `/`. Quote it: `\"$DIR\"`, or use `${DIR:?}`.",
        bad: df!(base!(), "ARG DIR=/opt/app", "RUN rm -rf $DIR/cache", "USER 65532"),
        good: df!(
            base!(),
            "ARG DIR=/opt/app",
            "RUN rm -rf \"${DIR:?}/cache\"",
            "USER 65532"
        ),
        hadolint: &["SC2086"],
    },
    Rule {
        id: "KL403",
        name: "unquoted-substitution",
        severity: Warning,
        category: Shell,
        summary: "an unquoted `$(…)` is split into words",
        why: "The output is split on spaces and globbed. Quote it (`\"$(…)\"`); when several words are meant, read them into an array or use xargs.",
        bad: df!(base!(), "RUN mkdir -p $(dirname /opt/app/bin/tool)", "USER 65532"),
        good: df!(base!(), "RUN mkdir -p \"$(dirname /opt/app/bin/tool)\"", "USER 65532"),
        hadolint: &["SC2046"],
    },
    Rule {
        id: "KL404",
        name: "find-xargs",
        severity: Warning,
        category: Shell,
        summary: "`find | xargs` without `-print0` / `-0`",
        why: "xargs splits on spaces and quotes, so file names with them are broken up or skipped. Use `find … -print0 | xargs -0 …` or `find … -exec … +`.",
        bad: df!(base!(), "RUN find /opt -name '*.sh' | xargs chmod +x", "USER 65532"),
        good: df!(base!(), "RUN find /opt -name '*.sh' -exec chmod +x {} +", "USER 65532"),
        hadolint: &["SC2038"],
    },
    Rule {
        id: "KL405",
        name: "ls-grep",
        severity: Warning,
        category: Shell,
        summary: "`ls | grep` to select files",
        why: "ls output is for people: names with spaces, newlines or odd characters are mangled. Use a glob (`for f in /etc/app/*.conf`) or `find -name`.",
        bad: df!(base!(), "RUN ls /etc/app | grep conf > /tmp/confs", "USER 65532"),
        good: df!(base!(), "RUN find /etc/app -name '*conf*' > /tmp/confs", "USER 65532"),
        hadolint: &["SC2010"],
    },
    Rule {
        id: "KL406",
        name: "posix-test-equals",
        severity: Warning,
        category: Shell,
        summary: "`==` inside `[ ]` under /bin/sh",
        why: "`==` is a bash extension; Debian's /bin/sh (dash) stops with `[: unexpected operator`. Use `=`, or set `SHELL [\"/bin/bash\", \"-c\"]`.",
        bad: df!(
            base!(),
            "ARG MODE=release",
            "RUN if [ \"$MODE\" == release ]; then echo optimised; fi",
            "USER 65532"
        ),
        good: df!(
            base!(),
            "ARG MODE=release",
            "RUN if [ \"$MODE\" = release ]; then echo optimised; fi",
            "USER 65532"
        ),
        hadolint: &["SC3014"],
    },
];
