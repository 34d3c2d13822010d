# One machine's UEFI boot through GRUB, as issue 19's boot storm has it:
# OVMF's size probe and windowed download of the NBP (blksize 1468,
# windowsize 4), GRUB's search for a per-machine config (8 names that do
# not exist), the config, then an 8 MiB kernel and a 16 MiB initrd
# lock-step at 1468.
# Play it with: tftpbench -boot uefi-grub.boot -server HOST:PORT -c 100 -n 100 -src 127.1.0.0/16

probe grubx64.efi blksize=1468                     # UEFI size probe: tsize, then ERROR 8
get   grubx64.efi blksize=1468 windowsize=4 tsize  # what OVMF asks for
miss  grub/grub.cfg-01-{mac} grub/grub.cfg-{hex} grub/grub.cfg-{hex:7} grub/grub.cfg-{hex:6}
miss  grub/grub.cfg-{hex:5} grub/grub.cfg-{hex:4} grub/grub.cfg-{hex:3} grub/grub.cfg-{hex:2}
get   grub/grub.cfg blksize=1468 tsize             # the config (about 300 bytes)
get   vmlinuz blksize=1468 tsize
get   initrd.img blksize=1468 tsize
