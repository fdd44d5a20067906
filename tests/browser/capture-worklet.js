// capture-worklet.js -- AudioWorkletProcessor used by join.mjs to record what a
// join page receives. Mixes its input down to mono and posts Float32Array chunks
// (about 1 s each) to the main thread. Posting the string 'flush' to its port
// sends what is buffered, followed by the string 'flushed'.
class ChamadeCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.blocks = [];
    this.frames = 0;
    this.port.onmessage = (e) => {
      if (e.data === 'flush') {
        this.flush();
        this.port.postMessage('flushed');
      }
    };
  }

  flush() {
    if (!this.frames) return;
    const out = new Float32Array(this.frames);
    let o = 0;
    for (const b of this.blocks) { out.set(b, o); o += b.length; }
    this.port.postMessage(out, [out.buffer]);
    this.blocks = [];
    this.frames = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (input && input.length) {
      const n = input[0].length;
      const mono = new Float32Array(n);
      for (const ch of input) for (let i = 0; i < n; i++) mono[i] += ch[i];
      if (input.length > 1) for (let i = 0; i < n; i++) mono[i] /= input.length;
      this.blocks.push(mono);
      this.frames += n;
      if (this.frames >= sampleRate) this.flush();
    }
    return true;
  }
}
registerProcessor('chamade-capture', ChamadeCapture);
