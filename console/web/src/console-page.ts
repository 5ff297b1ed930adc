/** A page of the console: renders into the main element, returns its cleanup. */
export interface ConsolePage {
  title: string;
  render(main: HTMLElement): () => void;
}
