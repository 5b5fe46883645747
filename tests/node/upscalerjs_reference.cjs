// Reference super-resolution outputs: a TF.js layers model (@upscalerjs/models, idealo's RDN/RRDN)
// run by @tensorflow/tfjs on its pure-JS CPU backend.
//
//   node upscalerjs_reference.cjs MODEL_JSON INPUT N H W OUTPUT [MULTIPLIER]
//
// INPUT holds N RGB images of H x W, NHWC, as uint8 (file name ending in .u8) or float32 (any other
// name). The network is fed INPUT * MULTIPLIER (default 1/255 for uint8, 1 for float32). OUTPUT gets
// the raw network output as float32 NHWC (N, sH, sW, 3): no clipping and no rescaling.
//
// Loading a local model in node without the native @tensorflow/tfjs-node needs an IO handler: ours
// reads model.json and its shards from disk. The RRDN uses two custom Keras layers from idealo's ISR;
// we register our own implementations of them, which read beta and scale from the layer config.
// @tensorflow/tfjs is looked up from the current folder first, then beside this script.
const fs = require('fs');
const path = require('path');
const tf = require(require.resolve('@tensorflow/tfjs', { paths: [process.cwd(), __dirname] }));

// x * beta (residual scaling inside the RRDN)
class MultiplyBeta extends tf.layers.Layer {
  constructor(config) {
    super(config);
    this.beta = config.beta;
  }

  call(inputs) {
    return tf.mul(Array.isArray(inputs) ? inputs[0] : inputs, this.beta);
  }

  getConfig() {
    return { ...super.getConfig(), beta: this.beta };
  }
}
MultiplyBeta.className = 'MultiplyBeta';

// tf.nn.depth_to_space in NHWC, as ISR's and upscalerjs's PixelShuffle layers: the output pixel
// (h*s + i, w*s + j, c) takes input channel (i*s + j)*C_out + c.
class PixelShuffle extends tf.layers.Layer {
  constructor(config) {
    super(config);
    this.scale = config.scale;
  }

  computeOutputShape(s) {
    const up = (d) => (d == null ? null : d * this.scale);
    return [s[0], up(s[1]), up(s[2]), s[3] / (this.scale * this.scale)];
  }

  call(inputs) {
    return tf.depthToSpace(Array.isArray(inputs) ? inputs[0] : inputs, this.scale, 'NHWC');
  }

  getConfig() {
    return { ...super.getConfig(), scale: this.scale };
  }
}
PixelShuffle.className = 'PixelShuffle';

tf.serialization.registerClass(MultiplyBeta);
tf.serialization.registerClass(PixelShuffle);

// An IO handler reading model.json and its weight shards from disk.
function fileHandler(modelJson) {
  return {
    load: async () => {
      const model = JSON.parse(fs.readFileSync(modelJson));
      const dir = path.dirname(modelJson);
      const groups = model.weightsManifest;
      const data = Buffer.concat(groups.flatMap((g) => g.paths.map((p) => fs.readFileSync(path.join(dir, p)))));
      return {
        modelTopology: model.modelTopology,
        format: model.format,
        generatedBy: model.generatedBy,
        convertedBy: model.convertedBy,
        weightSpecs: groups.flatMap((g) => g.weights),
        weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength),
      };
    },
  };
}

async function main() {
  const [modelJson, inputPath, n, h, w, outputPath, multiplierText] = process.argv.slice(2);
  const shape = [Number(n), Number(h), Number(w), 3];
  await tf.setBackend('cpu');
  await tf.ready();
  const model = await tf.loadLayersModel(fileHandler(modelJson));
  const bytes = fs.readFileSync(inputPath);
  const isU8 = inputPath.endsWith('.u8');
  const values = isU8 ? new Uint8Array(bytes) : new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  const multiplier = multiplierText === undefined ? (isU8 ? 1 / 255 : 1) : Number(multiplierText);
  const input = tf.tidy(() => tf.mul(tf.tensor4d(Float32Array.from(values), shape, 'float32'), multiplier));
  const start = Date.now();
  const out = model.predict(input);
  const data = await out.data();
  const ms = Date.now() - start;
  fs.writeFileSync(outputPath, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  console.log(`wrote ${out.shape.join('x')} in ${ms} ms (tfjs ${tf.version.tfjs}, backend ${tf.getBackend()})`);
}
main();
