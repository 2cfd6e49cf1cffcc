"""Operations: mounts at boot (the fstab mount helper), machine checks (doctor), and the
metrics of long-running commands other than mounts."""
