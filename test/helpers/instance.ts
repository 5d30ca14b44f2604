// A fixed instance identity for backend unit tests: no socket is held, the id is known in advance.
import type { InstanceIdentity } from '../../src/firewall/instance.js';

export const ID = '4a3b2c1d';

export const fixedInstance = (id: string = ID): InstanceIdentity & { claimed: number; released: number } => ({
  id,
  claimed: 0,
  released: 0,
  async claim() {
    this.claimed++;
  },
  release() {
    this.released++;
  },
});
