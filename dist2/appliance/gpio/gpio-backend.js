/**
 * The one interface between Snapback's GPIO logic and the kernel. Lines are named by their BCM
 * number (the "GPIO17" of the Pi's pinout); a backend maps them to whatever its kernel
 * interface uses. Levels are physical (0 = low, 1 = high): polarity (active-low buttons,
 * inverted sense inputs) is handled above the backend, so that a simulated pin shows exactly
 * what a voltmeter on the header would.
 *
 * Two implementations: OnoffGpioBackend (onoff on the legacy sysfs interface) and
 * SimulatedGpioBackend (in memory, for tests). The kernel's GPIO character device (libgpiod)
 * could replace sysfs later with a third implementation of this interface; nothing above it
 * would change. The calls are synchronous because both sysfs and libgpiod line requests are.
 */
export {};
//# sourceMappingURL=gpio-backend.js.map