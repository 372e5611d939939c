for f in app.log a/b/deep.log keep/x.log keep/sub/y.log keep/sub/drop.log secret.txt \
    a/secret.txt build/out.bin build/keep-me.txt x/temp/t a/b/temp/t a/.cache/c .cache/c \
    src/main.txt; do
  mkdir -p "$(dirname "$f")"
  echo "$f" > "$f"
done
