/**
 * GPIO settings (part of the appliance settings). Pins are BCM numbers of the 40-pin header;
 * null means "not wired". Only the button and the status LED are wired by default: a power
 * LED input left floating would read random levels and could end sessions under a live host,
 * so host power control is off until its pins are set. Wiring and defaults: docs/gpio.md.
 * Strict: a misspelt key ("buton", "swichPin") is an error naming it, never silently ignored.
 */
import { z } from 'zod';

const bcmPin = z.number().int().min(0).max(27);
const ms = (min: number, max: number) => z.number().int().min(min).max(max);

export const ButtonSettingsSchema = z.object({
  pin: bcmPin.nullable().default(17),
  /** Pressed = low (button to GND, pull-up). */
  activeLow: z.boolean().default(true),
  /** A level counts once it has been stable this long. */
  debounceMs: ms(1, 1000).default(50),
  /** Held this long = long press ("restore now"); shorter = short press. */
  longPressMs: ms(500, 30_000).default(3000),
  /** How long the LED warns before a long press acts; a press meanwhile cancels it. */
  warningMs: ms(0, 30_000).default(2000),
}).strict();

export const StatusLedSettingsSchema = z.object({
  pin: bcmPin.nullable().default(22),
  /** Lit = low (LED from 3V3 to the pin). Default: lit = high (pin → resistor → LED → GND). */
  activeLow: z.boolean().default(false),
}).strict();

export const PowerSettingsSchema = z.object({
  /** Output to the host's power button (through an optocoupler or relay). */
  switchPin: bcmPin.nullable().default(null),
  /** Output to the host's reset button. */
  resetPin: bcmPin.nullable().default(null),
  /** Input from the host's power LED (through an optocoupler). */
  ledPin: bcmPin.nullable().default(null),
  /** Default: a button is "pressed" by driving the pin high (optocoupler LED to GND). */
  outputsActiveLow: z.boolean().default(false),
  /** Default: the LED is lit when the pin is low (optocoupler transistor to GND, pull-up). */
  ledActiveLow: z.boolean().default(true),
  ledDebounceMs: ms(1, 1000).default(20),
  /** A short press of the power button (power on, graceful off). */
  pressMs: ms(50, 3000).default(500),
  resetPressMs: ms(50, 3000).default(500),
  /** Holding the power button this long forces an ATX host off (the ATX rule is ≥ 4 s). */
  forceOffMs: ms(5000, 20_000).default(6000),
  /**
   * The power LED dark this long means the host is off. Longer than the dark phase of the
   * LED's blinking while the host sleeps: a sleeping host keeps its session.
   */
  hostOffAfterMs: ms(1000, 120_000).default(5000),
  /** End the host session when the host is off (per hostOffAfterMs). */
  endSessionOnPowerOff: z.boolean().default(true),
  /** How long a graceful off may take before the host is forced off. */
  gracefulOffTimeoutMs: ms(5000, 3_600_000).default(120_000),
  /** How long after the forced-off hold the LED must go dark (on top of hostOffAfterMs). */
  forcedOffTimeoutMs: ms(1000, 120_000).default(10_000),
  /** How long after power on the LED must light; otherwise the host is reported as not back. */
  powerOnTimeoutMs: ms(1000, 600_000).default(30_000),
}).strict();

export const GpioSettingsSchema = z
  .object({
    enabled: z.boolean().default(true),
    button: ButtonSettingsSchema.default({}),
    statusLed: StatusLedSettingsSchema.default({}),
    power: PowerSettingsSchema.default({}),
  })
  .strict()
  .superRefine((s, ctx) => {
    const used = new Map<number, string>();
    const pins: [string, number | null][] = [
      ['button.pin', s.button.pin],
      ['statusLed.pin', s.statusLed.pin],
      ['power.switchPin', s.power.switchPin],
      ['power.resetPin', s.power.resetPin],
      ['power.ledPin', s.power.ledPin],
    ];
    for (const [name, pin] of pins) {
      if (pin === null) continue;
      const other = used.get(pin);
      if (other !== undefined) {
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          path: name.split('.'),
          message: `GPIO${pin} is already used by ${other}`,
        });
      }
      used.set(pin, name);
    }
  });

export type GpioSettings = z.output<typeof GpioSettingsSchema>;
export type GpioSettingsInput = z.input<typeof GpioSettingsSchema>;
export type ButtonSettings = GpioSettings['button'];
export type PowerSettings = GpioSettings['power'];

/** The settings with every default filled in. */
export const defaultGpioSettings = (): GpioSettings => GpioSettingsSchema.parse({});
