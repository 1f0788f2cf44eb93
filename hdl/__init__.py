"""The gateware of onebit, in Amaranth HDL. Shared definitions are imported from onebit.host."""
