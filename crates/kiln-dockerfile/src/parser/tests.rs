use super::*;

fn p(src: &str) -> Dockerfile {
    match parse(src) {
        Ok(d) => d,
        Err(e) => panic!("parse failed:\n{}", e.render("Dockerfile", src)),
    }
}

/// Commands after the leading `FROM x` line that every case starts with.
fn body(src: &str) -> Vec<Command> {
    let d = p(&format!("FROM x\n{src}"));
    d.instructions.into_iter().skip(1).map(|i| i.command).collect()
}

fn one(src: &str) -> Command {
    let mut v = body(src);
    assert_eq!(v.len(), 1, "{src:?} gave {v:?}");
    v.remove(0)
}

fn sh(s: &str) -> CommandLine {
    CommandLine::Shell(s.into())
}

fn exec(v: &[&str]) -> CommandLine {
    CommandLine::Exec(v.iter().map(|s| s.to_string()).collect())
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v.into(),
        legacy: false,
    }
}

fn doc(name: &str, content: &str, expand: bool, strip_tabs: bool, fd: Option<u32>) -> Heredoc {
    Heredoc {
        name: name.into(),
        content: content.into(),
        expand,
        strip_tabs,
        fd,
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_instruction() {
    let src = r#"# syntax=docker/dockerfile:1
ARG BASE=debian:bookworm
FROM --platform=$BUILDPLATFORM $BASE AS Build
RUN --mount=type=cache,target=/root/.cache --network=none make
CMD ["run", "--fast"]
ENTRYPOINT /bin/app -v
SHELL ["/bin/bash", "-c"]
COPY --from=build --chown=1:1 --chmod=0644 --link a b /dst/
ADD --checksum=sha256:abc --keep-git-dir https://x/y.tar.gz /opt/
ENV A=1 B="two words" C=
ARG V1 V2=x
LABEL org.opencontainers.image.title="kiln" version=1
EXPOSE 80/tcp 53/udp
USER app:app
WORKDIR /src
VOLUME ["/data", "/logs"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --timeout=1m30s --start-period=1.5s --retries=3 CMD curl -f http://l/
ONBUILD COPY --from=x . /src
MAINTAINER someone <a@b>
"#;
    let d = p(src);
    assert_eq!(d.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(d.directives.escape, '\\');
    let c: Vec<&Command> = d.instructions.iter().map(|i| &i.command).collect();
    assert_eq!(
        *c[0],
        Command::Arg(vec![ArgDecl {
            name: "BASE".into(),
            default: Some("debian:bookworm".into())
        }])
    );
    assert_eq!(
        *c[1],
        Command::From {
            image: "$BASE".into(),
            name: Some("build".into())
        }
    );
    assert_eq!(d.instructions[1].flag_value("platform"), Some("$BUILDPLATFORM"));
    assert_eq!(d.instructions[1].flags[0].col, 6);
    assert_eq!(d.instructions[1].flags[0].line, 3);
    assert_eq!(
        *c[2],
        Command::Run {
            cmd: sh("make"),
            heredocs: vec![]
        }
    );
    assert_eq!(
        d.instructions[2].flag_values("mount").collect::<Vec<_>>(),
        ["type=cache,target=/root/.cache"]
    );
    assert_eq!(d.instructions[2].flag_value("network"), Some("none"));
    assert_eq!(*c[3], Command::Cmd(exec(&["run", "--fast"])));
    assert_eq!(*c[4], Command::Entrypoint(sh("/bin/app -v")));
    assert_eq!(*c[5], Command::Shell(strings(&["/bin/bash", "-c"])));
    assert_eq!(
        *c[6],
        Command::Copy(CopyArgs {
            sources: strings(&["a", "b"]),
            dest: "/dst/".into(),
            heredocs: vec![]
        })
    );
    let copy = &d.instructions[6];
    assert_eq!(copy.flag_value("from"), Some("build"));
    assert!(copy.flag_bool("link"));
    assert!(!copy.flag_bool("parents"));
    assert_eq!(copy.flag_value("chmod"), Some("0644"));
    assert!(d.instructions[7].flag_bool("keep-git-dir"));
    assert!(matches!(c[7], Command::Add(a) if a.sources == ["https://x/y.tar.gz"] && a.dest == "/opt/"));
    assert_eq!(
        *c[8],
        Command::Env(vec![kv("A", "1"), kv("B", "\"two words\""), kv("C", "")])
    );
    assert_eq!(
        *c[9],
        Command::Arg(vec![
            ArgDecl {
                name: "V1".into(),
                default: None
            },
            ArgDecl {
                name: "V2".into(),
                default: Some("x".into())
            }
        ])
    );
    assert_eq!(
        *c[10],
        Command::Label(vec![
            kv("org.opencontainers.image.title", "\"kiln\""),
            kv("version", "1")
        ])
    );
    assert_eq!(*c[11], Command::Expose(strings(&["80/tcp", "53/udp"])));
    assert_eq!(*c[12], Command::User("app:app".into()));
    assert_eq!(*c[13], Command::Workdir("/src".into()));
    assert_eq!(*c[14], Command::Volume(strings(&["/data", "/logs"])));
    assert_eq!(*c[15], Command::StopSignal("SIGINT".into()));
    match c[16] {
        Command::Healthcheck(Healthcheck::Cmd { cmd, options }) => {
            assert_eq!(*cmd, sh("curl -f http://l/"));
            assert_eq!(options.interval, Some(Duration::from_secs(30)));
            assert_eq!(options.timeout, Some(Duration::from_secs(90)));
            assert_eq!(options.start_period, Some(Duration::from_millis(1500)));
            assert_eq!(options.start_interval, None);
            assert_eq!(options.retries, Some(3));
        }
        other => panic!("{other:?}"),
    }
    match c[17] {
        Command::Onbuild(inner) => {
            assert_eq!(inner.keyword, "COPY");
            assert_eq!(inner.flag_value("from"), Some("x"));
            assert_eq!(inner.line, 19);
            assert_eq!(inner.original, "COPY --from=x . /src");
            assert!(matches!(&inner.command, Command::Copy(a) if a.sources == ["."] && a.dest == "/src"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(*c[18], Command::Maintainer("someone <a@b>".into()));

    let stages = d.stages();
    assert_eq!(stages.len(), 1);
    assert_eq!(stages[0].name, Some("build"));
    assert_eq!(stages[0].base, "$BASE");
    assert_eq!(stages[0].instructions.len(), 17);
    assert_eq!(d.global_args().len(), 1);
}

#[test]
fn case_insensitive_keywords_and_as() {
    let d = p("from alpine as One\nrun echo hi\nCoPy a b\n");
    assert_eq!(
        d.instructions[0].command,
        Command::From {
            image: "alpine".into(),
            name: Some("one".into())
        }
    );
    assert_eq!(d.instructions[1].keyword, "run");
    assert!(matches!(d.instructions[2].command, Command::Copy(_)));
}

#[test]
fn directives() {
    let d = p("#Syntax = docker/dockerfile:1.7\n  # ESCAPE = `\n# check=skip=all;error=true\nFROM x\n");
    assert_eq!(d.directives.syntax.as_deref(), Some("docker/dockerfile:1.7"));
    assert_eq!(d.directives.escape, '`');
    assert_eq!(d.directives.check.as_deref(), Some("skip=all;error=true"));

    // After a comment, blank line or unknown directive, they are comments.
    for src in [
        "# hello\n# escape=`\nFROM x\n",
        "\n# escape=`\nFROM x\n",
        "# foo=bar\n# escape=`\nFROM x\n",
    ] {
        assert_eq!(p(src).directives.escape, '\\', "{src:?}");
    }
    // After the first instruction, too.
    assert_eq!(p("FROM x\n# escape=`\n").directives.escape, '\\');
}

#[test]
fn backtick_escape_windows_style() {
    let src = "# escape=`\nFROM mcr.microsoft.com/windows\nCOPY testfile.txt c:\\\nRUN dir c:\\ `\n    && echo done\nENV P=\"a`\"b\" Q=c:\\x\n";
    let d = p(src);
    let c: Vec<&Command> = d.instructions.iter().map(|i| &i.command).collect();
    assert!(matches!(c[1], Command::Copy(a) if a.sources == ["testfile.txt"] && a.dest == "c:\\"));
    assert_eq!(
        *c[2],
        Command::Run {
            cmd: sh("dir c:\\     && echo done"),
            heredocs: vec![]
        }
    );
    assert_eq!(d.instructions[2].line, 4);
    assert_eq!(d.instructions[2].end_line, 5);
    assert_eq!(*c[3], Command::Env(vec![kv("P", "\"a`\"b\""), kv("Q", "c:\\x")]));
}

#[test]
fn continuations() {
    let src = "FROM x\nRUN apt-get update && \\\n    apt-get install -y \\\n# a comment inside\n   # indented comment\n\n        curl \\  \n    && true\nRUN echo \\\\\nRUN \\\n  echo a\n";
    let d = p(src);
    assert_eq!(
        d.instructions[1].command,
        Command::Run {
            cmd: sh("apt-get update &&     apt-get install -y         curl     && true"),
            heredocs: vec![]
        }
    );
    assert_eq!((d.instructions[1].line, d.instructions[1].end_line), (2, 8));
    assert_eq!(
        d.instructions[1].original,
        "RUN apt-get update &&     apt-get install -y         curl     && true"
    );
    // An escaped escape does not continue.
    assert_eq!(
        d.instructions[2].command,
        Command::Run {
            cmd: sh("echo \\\\"),
            heredocs: vec![]
        }
    );
    assert_eq!(
        d.instructions[3].command,
        Command::Run {
            cmd: sh("echo a"),
            heredocs: vec![]
        }
    );
    assert_eq!(d.instructions[3].line, 10);
    // Continuation at EOF is fine.
    assert_eq!(
        body("RUN echo \\"),
        vec![Command::Run {
            cmd: sh("echo"),
            heredocs: vec![]
        }]
    );
}

#[test]
fn comments_and_blank_lines_and_crlf() {
    let d = p("\u{feff}# c\r\n\r\nFROM x\r\n  # indented\r\nRUN a # not a comment\r\n");
    assert_eq!(d.instructions.len(), 2);
    assert_eq!(
        d.instructions[1].command,
        Command::Run {
            cmd: sh("a # not a comment"),
            heredocs: vec![]
        }
    );
    assert_eq!(d.instructions[1].line, 5);
}

#[test]
fn json_and_shell_forms() {
    assert_eq!(one("CMD [\"a\", \"b c\"]"), Command::Cmd(exec(&["a", "b c"])));
    assert_eq!(one("CMD []"), Command::Cmd(exec(&[])));
    assert_eq!(one("CMD [\"\\u00e9\\n\"]"), Command::Cmd(exec(&["\u{e9}\n"])));
    // Malformed JSON falls back to shell form, as in Docker.
    assert_eq!(one("CMD ['a', 'b']"), Command::Cmd(sh("['a', 'b']")));
    assert_eq!(one("CMD [\"a\",]"), Command::Cmd(sh("[\"a\",]")));
    assert_eq!(
        one("CMD [\"echo\",\"hi\"] # c"),
        Command::Cmd(sh("[\"echo\",\"hi\"] # c"))
    );
    assert_eq!(
        one("RUN [\"c:\\x\"]"),
        Command::Run {
            cmd: sh("[\"c:\\x\"]"),
            heredocs: vec![]
        }
    );
    assert_eq!(
        one("ENTRYPOINT [\"/bin/app\"]"),
        Command::Entrypoint(exec(&["/bin/app"]))
    );
    assert_eq!(
        one("RUN [ \"ls\" , \"-l\" ]"),
        Command::Run {
            cmd: exec(&["ls", "-l"]),
            heredocs: vec![]
        }
    );
    assert_eq!(one("VOLUME /a /b"), Command::Volume(strings(&["/a", "/b"])));
    assert!(matches!(one("COPY [\"a b\", \"/c d/\"]"), Command::Copy(a) if a.sources == ["a b"] && a.dest == "/c d/"));
    // Shell-form COPY does not honour quotes (BuildKit splits on whitespace).
    assert!(matches!(one("COPY \"a b\" /c"), Command::Copy(a) if a.sources == ["\"a", "b\""]));
}

#[test]
fn heredocs_run() {
    let c = body(
        "RUN <<EOF\necho $HOME\n  indented\nEOF\nRUN python3 <<'PY' > out\nprint(1)\nPY\nRUN <<-EOT\n\t\techo tab\n\tEOT\nRUN 3<<\"A\" cat <<B\na\nA\nb\nB\nRUN echo <<EOF\nEOF\n",
    );
    assert_eq!(
        c[0],
        Command::Run {
            cmd: sh("<<EOF"),
            heredocs: vec![doc("EOF", "echo $HOME\n  indented\n", true, false, None)]
        }
    );
    assert_eq!(
        c[1],
        Command::Run {
            cmd: sh("python3 <<'PY' > out"),
            heredocs: vec![doc("PY", "print(1)\n", false, false, None)]
        }
    );
    assert_eq!(
        c[2],
        Command::Run {
            cmd: sh("<<-EOT"),
            heredocs: vec![doc("EOT", "echo tab\n", true, true, None)]
        }
    );
    assert_eq!(
        c[3],
        Command::Run {
            cmd: sh("3<<\"A\" cat <<B"),
            heredocs: vec![
                doc("A", "a\n", false, false, Some(3)),
                doc("B", "b\n", true, false, None)
            ]
        }
    );
    assert_eq!(
        c[4],
        Command::Run {
            cmd: sh("echo <<EOF"),
            heredocs: vec![doc("EOF", "", true, false, None)]
        }
    );
    assert_eq!(c.len(), 5);
    let d = p("FROM x\nRUN <<EOF\na\n# not a comment\n\nEOF\nRUN b\n");
    assert_eq!((d.instructions[1].line, d.instructions[1].end_line), (2, 6));
    assert!(
        matches!(&d.instructions[1].command, Command::Run { heredocs, .. } if heredocs[0].content == "a\n# not a comment\n\n")
    );
    assert_eq!(d.instructions[2].line, 7);
}

#[test]
fn heredoc_not_recognised() {
    // `<<` must start a word; JSON form and quoted markers are not heredocs;
    // `<< EOF` (space) is not one either.
    assert_eq!(
        one("RUN cat<<EOF"),
        Command::Run {
            cmd: sh("cat<<EOF"),
            heredocs: vec![]
        }
    );
    assert_eq!(
        one("RUN echo '<<EOF'"),
        Command::Run {
            cmd: sh("echo '<<EOF'"),
            heredocs: vec![]
        }
    );
    assert_eq!(
        one("RUN cat << EOF"),
        Command::Run {
            cmd: sh("cat << EOF"),
            heredocs: vec![]
        }
    );
    assert_eq!(
        one("RUN [\"sh\", \"-c\", \"cat <<EOF\"]"),
        Command::Run {
            cmd: exec(&["sh", "-c", "cat <<EOF"]),
            heredocs: vec![]
        }
    );
    assert_eq!(
        one("RUN cat <<<EOF"),
        Command::Run {
            cmd: sh("cat <<<EOF"),
            heredocs: vec![]
        }
    );
}

#[test]
fn heredocs_copy() {
    let c = body(
        "COPY <<file1 <<\"file2\" /dst/\nhello $X\nfile1\nraw $X\nfile2\nCOPY --chmod=755 a <<-run.sh /bin/\n\t#!/bin/sh\n\trun.sh\n",
    );
    assert_eq!(
        c[0],
        Command::Copy(CopyArgs {
            sources: vec![],
            dest: "/dst/".into(),
            heredocs: vec![
                doc("file1", "hello $X\n", true, false, None),
                doc("file2", "raw $X\n", false, false, None)
            ]
        })
    );
    assert_eq!(
        c[1],
        Command::Copy(CopyArgs {
            sources: strings(&["a"]),
            dest: "/bin/".into(),
            heredocs: vec![doc("run.sh", "#!/bin/sh\n", true, true, None)]
        })
    );
    // ONBUILD may wrap a heredoc instruction.
    let c = body("ONBUILD RUN <<EOF\necho hi\nEOF\nRUN x\n");
    match &c[0] {
        Command::Onbuild(i) => {
            assert!(matches!(&i.command, Command::Run { heredocs, .. } if heredocs[0].content == "echo hi\n"))
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(c.len(), 2);
}

#[test]
fn env_and_label_forms() {
    assert_eq!(
        one("ENV A b c"),
        Command::Env(vec![KeyValue {
            key: "A".into(),
            value: "b c".into(),
            legacy: true
        }])
    );
    assert_eq!(
        one("ENV A \"b\"  c"),
        Command::Env(vec![KeyValue {
            key: "A".into(),
            value: "\"b\"  c".into(),
            legacy: true
        }])
    );
    assert_eq!(
        one("LABEL a=b\\ c d='e f'"),
        Command::Label(vec![kv("a", "b\\ c"), kv("d", "'e f'")])
    );
    assert_eq!(one("ENV A=a=b"), Command::Env(vec![kv("A", "a=b")]));
    assert_eq!(
        one("ENV A=\"multi \\\n  line\""),
        Command::Env(vec![kv("A", "\"multi   line\"")])
    );
    assert_eq!(
        one("LABEL \"key with space\"=v"),
        Command::Label(vec![kv("\"key with space\"", "v")])
    );
}

#[test]
fn flags_forms() {
    let d = p(
        "FROM x\nCOPY --link=false --exclude=*.md --exclude=\"a b\" --parents=TRUE a b\nRUN -- --not-a-flag\nRUN --mount=type=bind,source=/x --mount=type=tmpfs,target=/t ls\n",
    );
    let copy = &d.instructions[1];
    assert!(!copy.flag_bool("link"));
    assert!(copy.flag_bool("parents"));
    assert_eq!(copy.flag_values("exclude").collect::<Vec<_>>(), ["*.md", "a b"]);
    assert_eq!(copy.flags[1].col, 19);
    assert_eq!(
        d.instructions[2].command,
        Command::Run {
            cmd: sh("--not-a-flag"),
            heredocs: vec![]
        }
    );
    assert_eq!(d.instructions[3].flag_values("mount").count(), 2);
}

#[test]
fn healthcheck_forms() {
    assert_eq!(one("HEALTHCHECK NONE"), Command::Healthcheck(Healthcheck::None));
    assert_eq!(one("healthcheck none"), Command::Healthcheck(Healthcheck::None));
    assert_eq!(
        one("HEALTHCHECK CMD [\"/hc\", \"-q\"]"),
        Command::Healthcheck(Healthcheck::Cmd {
            cmd: exec(&["/hc", "-q"]),
            options: HealthcheckOptions::default()
        })
    );
    match one("HEALTHCHECK --interval=0 --start-interval=250ms --timeout=1h2m3.5s cmd true") {
        Command::Healthcheck(Healthcheck::Cmd { options, .. }) => {
            assert_eq!(options.interval, Some(Duration::ZERO));
            assert_eq!(options.start_interval, Some(Duration::from_millis(250)));
            assert_eq!(options.timeout, Some(Duration::from_millis(3_723_500)));
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn stages_view() {
    let d = p("ARG A\nARG B=1\nFROM a AS one\nRUN x\nFROM one\nCOPY --from=one a b\nRUN y\n");
    assert_eq!(d.global_args().len(), 2);
    let s = d.stages();
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].name, s[0].base, s[0].instructions.len()), (Some("one"), "a", 1));
    assert_eq!((s[1].name, s[1].base, s[1].instructions.len()), (None, "one", 2));
    // Duplicate stage names only warn in BuildKit.
    assert_eq!(p("FROM a AS x\nFROM b AS x\n").stages().len(), 2);
}

#[test]
fn original_and_lines() {
    let d = p("FROM x\n\n  RUN   echo  hi  \nCOPY --from=x \\\n  a b\n");
    assert_eq!(d.instructions[1].original, "RUN   echo  hi");
    assert_eq!(
        d.instructions[1].command,
        Command::Run {
            cmd: sh("echo  hi"),
            heredocs: vec![]
        }
    );
    assert_eq!((d.instructions[1].line, d.instructions[1].end_line), (3, 3));
    assert_eq!(d.instructions[2].original, "COPY --from=x   a b");
    assert_eq!((d.instructions[2].line, d.instructions[2].end_line), (4, 5));
}

/// (source, line, col, message substring)
const ERRORS: &[(&str, usize, usize, &str)] = &[
    ("", 1, 1, "cannot be empty"),
    ("# only a comment\n\n", 1, 1, "cannot be empty"),
    ("ARG A\n", 1, 1, "no stages to build"),
    ("RUN x\nFROM y\n", 1, 1, "no build stage in current context"),
    ("FROM x\nFOO bar\n", 2, 1, "unknown instruction: FOO"),
    ("FROM x\n  RUNN make\n", 2, 3, "unknown instruction: RUNN"),
    ("FROM x\nRUN a \\\n  b\nfoo\n", 4, 1, "unknown instruction: foo"),
    ("FROM\n", 1, 1, "FROM requires either one or three arguments"),
    ("FROM a AS\n", 1, 10, "FROM requires either one or three arguments"),
    ("FROM a b\n", 1, 8, "FROM requires either one or three arguments"),
    ("FROM a AS b c\n", 1, 8, "FROM requires either one or three arguments"),
    ("FROM a AS 1st\n", 1, 11, "invalid name for build stage"),
    ("FROM a AS b$x\n", 1, 11, "invalid name for build stage"),
    ("FROM --platfrom=linux/amd64 a\n", 1, 6, "unknown flag: --platfrom"),
    ("FROM --platform a\n", 1, 6, "missing a value on flag: --platform"),
    (
        "FROM x\nCOPY onlyone\n",
        2,
        1,
        "COPY requires at least two arguments, but only one was provided",
    ),
    ("FROM x\nCOPY\n", 2, 1, "COPY requires at least two arguments"),
    ("FROM x\nADD --link a\n", 2, 1, "ADD requires at least two arguments"),
    ("FROM x\nCOPY --form=a b c\n", 2, 6, "unknown flag: --form"),
    ("FROM x\nADD --from=a b c\n", 2, 5, "unknown flag: --from"),
    ("FROM x\nCOPY --from a b\n", 2, 6, "missing a value on flag: --from"),
    (
        "FROM x\nCOPY --from=a --from=b c d\n",
        2,
        15,
        "duplicate flag specified: --from",
    ),
    (
        "FROM x\nCOPY --link=yes a b\n",
        2,
        6,
        "expecting boolean value for flag link",
    ),
    ("FROM x\nCOPY --link= a b\n", 2, 6, "missing a value on flag: --link"),
    (
        "FROM x\nCOPY a <<EOF\nEOF\n",
        2,
        8,
        "cannot accept a heredoc as a destination",
    ),
    (
        "FROM x\nRUN --mount type=cache ls\n",
        2,
        5,
        "missing a value on flag: --mount",
    ),
    (
        "FROM x\nRUN --network=bridge ls\n",
        2,
        5,
        "network mode \"bridge\" not supported",
    ),
    ("FROM x\nRUN --foo ls\n", 2, 5, "unknown flag: --foo"),
    ("FROM x\nCMD --help\n", 2, 5, "unknown flag: --help"),
    ("FROM x\nRUN\n", 2, 1, "RUN requires at least one argument"),
    (
        "FROM x\nRUN --mount=type=tmpfs,target=/t\n",
        2,
        1,
        "RUN requires at least one argument",
    ),
    ("FROM x\nCMD\n", 2, 1, "CMD requires at least one argument"),
    (
        "FROM x\nRUN [\"a\", 1]\n",
        2,
        5,
        "arrays must be comprised of strings only",
    ),
    (
        "FROM x\nSHELL /bin/sh -c\n",
        2,
        7,
        "SHELL requires the arguments to be in JSON form",
    ),
    (
        "FROM x\nSHELL ['/bin/sh']\n",
        2,
        7,
        "SHELL requires the arguments to be in JSON form",
    ),
    ("FROM x\nSHELL []\n", 2, 1, "SHELL requires at least one argument"),
    ("FROM x\nRUN <<EOF\necho hi\n", 2, 5, "unterminated heredoc \"EOF\""),
    (
        "FROM x\nRUN cat <<A <<B\na\nA\nb\n",
        2,
        13,
        "unterminated heredoc \"B\"",
    ),
    ("FROM x\nRUN <<-EOF\n\techo\n  EOF\n", 2, 5, "unterminated heredoc"),
    ("FROM x\nENV\n", 2, 1, "ENV requires at least one argument"),
    ("FROM x\nENV FOO\n", 2, 8, "ENV must have two arguments"),
    ("FROM x\nENV A=1 B\n", 2, 9, "can't find = in \"B\""),
    ("FROM x\nENV =1\n", 2, 5, "ENV names can not be blank"),
    ("FROM x\nLABEL\n", 2, 1, "LABEL requires at least one argument"),
    ("FROM x\nARG\n", 2, 1, "ARG requires at least one argument"),
    ("FROM x\nARG =x\n", 2, 5, "ARG names can not be blank"),
    ("FROM x\nUSER\n", 2, 1, "USER requires exactly one argument"),
    ("FROM x\nUSER   \n", 2, 1, "USER requires exactly one argument"),
    ("FROM x\nWORKDIR\n", 2, 1, "WORKDIR requires exactly one argument"),
    (
        "FROM x\nSTOPSIGNAL SIGTERM SIGKILL\n",
        2,
        20,
        "STOPSIGNAL requires exactly one argument",
    ),
    ("FROM x\nSTOPSIGNAL\n", 2, 1, "STOPSIGNAL requires exactly one argument"),
    ("FROM x\nEXPOSE\n", 2, 1, "EXPOSE requires at least one argument"),
    ("FROM x\nVOLUME\n", 2, 1, "VOLUME requires at least one argument"),
    (
        "FROM x\nVOLUME [\"\"]\n",
        2,
        8,
        "VOLUME specified can not be an empty string",
    ),
    ("FROM x\nMAINTAINER\n", 2, 1, "MAINTAINER requires exactly one argument"),
    ("FROM x\nONBUILD\n", 2, 1, "ONBUILD requires at least one argument"),
    (
        "FROM x\nONBUILD FROM y\n",
        2,
        9,
        "FROM isn't allowed as an ONBUILD trigger",
    ),
    (
        "FROM x\nONBUILD maintainer y\n",
        2,
        9,
        "MAINTAINER isn't allowed as an ONBUILD trigger",
    ),
    (
        "FROM x\nONBUILD ONBUILD RUN y\n",
        2,
        9,
        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
    ),
    ("FROM x\nONBUILD COPY a\n", 2, 9, "COPY requires at least two arguments"),
    ("FROM x\nONBUILD --x RUN a\n", 2, 9, "unknown flag: --x"),
    (
        "FROM x\nHEALTHCHECK\n",
        2,
        1,
        "HEALTHCHECK requires at least one argument",
    ),
    (
        "FROM x\nHEALTHCHECK NONE x\n",
        2,
        18,
        "HEALTHCHECK NONE takes no arguments",
    ),
    (
        "FROM x\nHEALTHCHECK CMD\n",
        2,
        16,
        "missing command after HEALTHCHECK CMD",
    ),
    (
        "FROM x\nHEALTHCHECK CMD []\n",
        2,
        17,
        "missing command after HEALTHCHECK CMD",
    ),
    (
        "FROM x\nHEALTHCHECK CMDX true\n",
        2,
        13,
        "Unknown type \"CMDX\" in HEALTHCHECK",
    ),
    (
        "FROM x\nHEALTHCHECK --interval=5 CMD true\n",
        2,
        13,
        "invalid duration for --interval",
    ),
    (
        "FROM x\nHEALTHCHECK --timeout=1us CMD true\n",
        2,
        13,
        "cannot be less than 1ms",
    ),
    (
        "FROM x\nHEALTHCHECK --retries=-1 CMD true\n",
        2,
        13,
        "--retries cannot be negative (-1)",
    ),
    (
        "FROM x\nHEALTHCHECK --retries=x CMD true\n",
        2,
        13,
        "invalid value for --retries",
    ),
    (
        "# escape=x\nFROM a\n",
        1,
        1,
        "invalid escape token 'x' does not match ` or \\",
    ),
    ("# escape=\\\\\nFROM a\n", 1, 1, "invalid escape token"),
    (
        "# syntax=a\n# syntax=b\nFROM a\n",
        2,
        1,
        "only one syntax parser directive can be used",
    ),
    (
        "#escape=`\n  # Escape=\\\nFROM a\n",
        2,
        3,
        "only one escape parser directive can be used",
    ),
    (
        "FROM x\nRUN echo \\\n  && é --bad \\\n  x\nCOPY --nope a b\n",
        5,
        6,
        "unknown flag: --nope",
    ),
    (
        "FROM x\nRUN a\\\n \\\n  --x\nCOPY \\\n   --b a c\n",
        6,
        4,
        "unknown flag: --b",
    ),
];

#[test]
fn malformed_dockerfiles() {
    assert!(ERRORS.len() >= 25);
    for (src, line, col, msg) in ERRORS {
        let err = match parse(src) {
            Ok(d) => panic!("{src:?} parsed: {d:?}"),
            Err(e) => e,
        };
        assert!(
            err.message.contains(msg),
            "{src:?}: message {:?} lacks {msg:?}",
            err.message
        );
        assert_eq!(
            (err.line, err.col),
            (*line, *col),
            "{src:?}: {}",
            err.render("Dockerfile", src)
        );
    }
}

#[test]
fn hints() {
    let e = parse("FROM x\nCOPY --form=a b c\n").unwrap_err();
    assert_eq!(e.hint.as_deref(), Some("did you mean --from?"));
    let e = parse("FROM x\nRUNN x\n").unwrap_err();
    assert_eq!(e.hint.as_deref(), Some("did you mean RUN?"));
    let e = parse("FROM x\nENV --x a=b\n").unwrap_err();
    assert_eq!(e.hint.as_deref(), Some("ENV takes no flags"));
    let e = parse("FROM x\nFROMM y\n").unwrap_err();
    assert_eq!(e.hint.as_deref(), Some("did you mean FROM?"));
}

#[test]
fn render_points_at_column() {
    let src = "FROM x\n\tCOPY --form=build /a /b\n";
    let e = parse(src).unwrap_err();
    let r = e.render("Dockerfile", src);
    assert_eq!(
        r,
        "Dockerfile:2:7: unknown flag: --form\n  2 | \tCOPY --form=build /a /b\n    | \t     ^\nhint: did you mean --from?\n"
    );
    assert_eq!(e.to_string(), "line 2:7: unknown flag: --form");
}

#[test]
fn never_panics_on_odd_input() {
    for src in [
        "\\",
        "\\\n\\\n",
        "FROM x\nRUN \\",
        "FROM x\nRUN <<",
        "FROM x\nRUN <<\"",
        "FROM x\nRUN <<'EOF",
        "FROM x\nCOPY <<\"a b\" /x\n",
        "FROM x\nRUN 99999999999999999999<<EOF\nEOF\n",
        "FROM x\nHEALTHCHECK --interval=99999999999999999999h CMD x\n",
        "FROM x\nRUN --mount=\"a\\",
        "FROM x\nENV a=\"\\",
        "FROM x\nENV \"",
        "FROM \u{e9}\u{1F600} AS \u{e9}\n",
        "FROM x\nRUN [\"\\ud800\"]\n",
        "FROM x\nRUN [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n",
    ] {
        let _ = parse(src);
    }
}

/// Cheap in-tree fuzzing for CI (the real fuzzers live in `fuzz/`): token
/// soup built from Dockerfile syntax must never panic, and errors must point
/// inside the source.
#[test]
fn token_soup_never_panics() {
    const TOKENS: &[&str] = &[
        "FROM",
        "RUN",
        "COPY",
        "ADD",
        "ENV",
        "ARG",
        "ONBUILD",
        "HEALTHCHECK",
        "SHELL",
        "CMD",
        "LABEL",
        "STOPSIGNAL",
        " ",
        " ",
        "\t",
        "\n",
        "\n",
        "\\",
        "\\\n",
        "`",
        "# escape=`\n",
        "#",
        "\"",
        "'",
        "=",
        "--",
        "--from=",
        "--mount",
        "--link",
        "--interval=",
        "1s",
        "<<",
        "<<-",
        "EOF",
        "\nEOF\n",
        "\tEOF",
        "[",
        "]",
        "\"a\"",
        ",",
        "AS",
        "x",
        "$",
        "${",
        "}",
        ":-",
        "NONE",
        "é",
        "\r\n",
        "3<<",
        "'EOF'",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let n = (next() % 40) as usize;
        let src: String = (0..n)
            .map(|_| TOKENS[(next() % TOKENS.len() as u64) as usize])
            .collect();
        if let Err(e) = parse(&src) {
            let lines = src.split('\n').count().max(1);
            assert!(e.line >= 1 && e.line <= lines, "{src:?}: {e:?}");
            assert!(e.col >= 1, "{src:?}: {e:?}");
            let _ = e.render("Dockerfile", &src);
        }
    }
}
