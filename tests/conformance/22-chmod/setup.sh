# Modes git cannot store.
mkdir -p modes/secret-dir
echo s > modes/setuid && chmod 4755 modes/setuid
echo g > modes/setgid && chmod 2711 modes/setgid
echo p > modes/private && chmod 0600 modes/private
echo x > modes/secret-dir/x && chmod 0700 modes/secret-dir
chmod 0750 modes
